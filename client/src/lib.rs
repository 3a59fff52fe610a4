//! skiff client: typed REST, watcher, reflector cache, controller runner, leader election.
