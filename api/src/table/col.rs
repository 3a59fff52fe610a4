//! Column definitions written as constants. The names, types and priorities are the
//! ones Kubernetes' printers declare (kubectl upper-cases the names); the descriptions
//! are skiff's own, since kubectl never shows them.

use super::ColumnDefinition;

/// A column definition that can live in a `const` table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Col {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    priority: i32,
    description: &'static str,
}

impl Col {
    /// The owned form served in a Table.
    pub(super) fn definition(&self) -> ColumnDefinition {
        ColumnDefinition {
            name: self.name.to_string(),
            type_: self.type_.to_string(),
            format: self.format.to_string(),
            description: self.description.to_string(),
            priority: self.priority,
        }
    }
}

/// The object's name, the column kubectl uses for `-o name`-like output.
pub(super) const NAME: Col = Col {
    name: "Name",
    type_: "string",
    format: "name",
    priority: 0,
    description: "Name of the object, unique within its namespace (or the cluster).",
};

/// The name as a wide column, for kinds led by another column (events).
pub(super) const WIDE_NAME: Col = Col {
    priority: 1,
    ..NAME
};

/// Time since creation, printed as a short human duration.
pub(super) const AGE: Col = text("Age", "Time since the object was created.");

/// The creation time in RFC 3339, for kinds without a printer of their own.
pub(super) const CREATED_AT: Col = Col {
    name: "Created At",
    type_: "date",
    format: "",
    priority: 0,
    description: "When the object was created (RFC 3339, UTC).",
};

/// A column shown by default whose cells are strings.
pub(super) const fn text(name: &'static str, description: &'static str) -> Col {
    Col {
        name,
        type_: "string",
        format: "",
        priority: 0,
        description,
    }
}

/// A column shown by default declared as an integer.
pub(super) const fn integer(name: &'static str, description: &'static str) -> Col {
    Col {
        type_: "integer",
        ..text(name, description)
    }
}

/// A column shown by default declared as a boolean.
pub(super) const fn boolean(name: &'static str, description: &'static str) -> Col {
    Col {
        type_: "boolean",
        ..text(name, description)
    }
}

/// A string column shown only with `-o wide` (priority 1).
pub(super) const fn wide(name: &'static str, description: &'static str) -> Col {
    Col {
        priority: 1,
        ..text(name, description)
    }
}

/// The wide columns every pod-template owner shows after its own.
pub(super) const CONTAINERS: Col =
    wide("Containers", "Names of the containers in the pod template.");
/// Images of the template's containers.
pub(super) const IMAGES: Col = wide("Images", "Images of the containers in the pod template.");
/// The label selector choosing the owned pods.
pub(super) const SELECTOR: Col = wide("Selector", "Label selector of the pods it manages.");
