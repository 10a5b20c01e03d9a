//! The template's placeholders a table takes as partition columns.

use arrow::datatypes::DataType;

use super::{Part, PathTemplate};

impl PathTemplate {
    /// The fields of plain `{field}` placeholders whose values a table can carry as partition
    /// values (strings, signed integers, booleans, dates), with their column indices, in
    /// template order (each once). Only a placeholder alone in its folder name (`{field}`, or
    /// `field={field}`) counts: in `{a}-{b}/` two pairs of values can render one folder, so
    /// a file's rows could not share one value of each.
    pub fn partition_fields(&self) -> Vec<(String, usize)> {
        // The template's folder names as text and placeholders.
        let mut segments: Vec<Vec<Result<String, usize>>> = vec![Vec::new()];
        for (i, p) in self.parts.iter().enumerate() {
            match p {
                Part::Literal(text) => {
                    for (k, piece) in text.split('/').enumerate() {
                        if k > 0 {
                            segments.push(Vec::new());
                        }
                        if !piece.is_empty() {
                            segments
                                .last_mut()
                                .expect("one")
                                .push(Ok(piece.to_string()));
                        }
                    }
                }
                _ => segments.last_mut().expect("one").push(Err(i)),
            }
        }
        let mut out: Vec<(String, usize)> = Vec::new();
        for seg in segments {
            let col = match seg.as_slice() {
                [Err(i)] => *i,
                [Ok(prefix), Err(i)] => match &self.parts[*i] {
                    Part::Value { col, .. } if *prefix == format!("{}=", col.name) => *i,
                    _ => continue,
                },
                _ => continue,
            };
            let Part::Value { col, .. } = &self.parts[col] else {
                continue;
            };
            let ok = matches!(
                col.data_type,
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Boolean
                    | DataType::Date32
            );
            if ok && !out.iter().any(|(n, _)| n == &col.name) {
                out.push((col.name.clone(), col.index));
            }
        }
        out
    }
}
