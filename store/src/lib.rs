//! skiff store.
