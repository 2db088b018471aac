//! Result rows as raw text, in batches: one text buffer and one offset per field for many
//! rows, so a streamed result costs two allocations per batch instead of one per field.
//!
//! `check` builds them from the driver's rows; `sample` and `archive` read fields as `&str`.
//! Knows nothing about the database driver, metrics or CSV.

/// Flag in a field's end offset: the field is NULL.
const NULL: u32 = 1 << 31;

/// Rows with the same number of fields each, back to back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    text: String,
    /// Per field, its end offset in `text`, with [`NULL`] set for a NULL.
    ends: Vec<u32>,
    columns: usize,
}

impl Rows {
    /// An empty batch for rows of `columns` fields.
    pub fn new(columns: usize) -> Self {
        Rows {
            text: String::new(),
            ends: Vec::new(),
            columns,
        }
    }

    /// An empty batch with room for about `rows` rows of `bytes` bytes of text.
    pub fn with_capacity(columns: usize, rows: usize, bytes: usize) -> Self {
        Rows {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(rows * columns),
            columns,
        }
    }

    /// Appends one field of the current row; a row is complete after `columns` fields.
    pub fn push_field(&mut self, value: Option<&str>) {
        match value {
            Some(v) => {
                self.text.push_str(v);
                self.ends.push(self.text.len() as u32);
            }
            None => self.ends.push(self.text.len() as u32 | NULL),
        }
    }

    /// Appends a whole row.
    pub fn push_row<'a>(&mut self, fields: impl IntoIterator<Item = Option<&'a str>>) {
        for f in fields {
            self.push_field(f);
        }
    }

    /// Rows in the batch (complete ones).
    pub fn len(&self) -> usize {
        self.ends.len().checked_div(self.columns).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Whether another field fits (offsets are 31 bits).
    pub fn has_room(&self, more: usize) -> bool {
        self.text.len() + more < NULL as usize
    }

    pub fn columns(&self) -> usize {
        self.columns
    }

    /// The rows, in order.
    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        (0..self.len()).map(move |r| RowRef { rows: self, row: r })
    }
}

/// One row of a [`Rows`] batch.
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    rows: &'a Rows,
    row: usize,
}

impl<'a> RowRef<'a> {
    /// Field `i`: `None` for NULL (and past the last column).
    pub fn get(&self, i: usize) -> Option<&'a str> {
        if i >= self.rows.columns {
            return None;
        }
        let at = self.row * self.rows.columns + i;
        let end = self.rows.ends[at];
        if end & NULL != 0 {
            return None;
        }
        let start = if at == 0 {
            0
        } else {
            self.rows.ends[at - 1] & !NULL
        };
        Some(&self.rows.text[start as usize..end as usize])
    }

    pub fn len(&self) -> usize {
        self.rows.columns
    }

    pub fn is_empty(&self) -> bool {
        self.rows.columns == 0
    }

    /// The fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = Option<&'a str>> + '_ {
        (0..self.rows.columns).map(|i| self.get(i))
    }
}

/// A row whose fields can be read as nullable text: a [`RowRef`], or a row of owned values.
pub trait Row {
    fn field(&self, i: usize) -> Option<&str>;
}

impl Row for RowRef<'_> {
    fn field(&self, i: usize) -> Option<&str> {
        self.get(i)
    }
}

impl Row for [Option<String>] {
    fn field(&self, i: usize) -> Option<&str> {
        self.get(i).and_then(|v| v.as_deref())
    }
}

impl Row for Vec<Option<String>> {
    fn field(&self, i: usize) -> Option<&str> {
        self.as_slice().field(i)
    }
}

impl<const N: usize> Row for [Option<String>; N] {
    fn field(&self, i: usize) -> Option<&str> {
        self.as_slice().field(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_nulls_and_empties_round_trip() {
        let mut r = Rows::new(3);
        r.push_row([Some("a"), None, Some("")]);
        r.push_row([None, Some("ünï"), Some("x,y")]);
        assert_eq!(r.len(), 2);
        let rows: Vec<Vec<Option<&str>>> = r.iter().map(|x| x.fields().collect()).collect();
        assert_eq!(
            rows,
            vec![
                vec![Some("a"), None, Some("")],
                vec![None, Some("ünï"), Some("x,y")]
            ]
        );
        assert_eq!(r.iter().next().unwrap().get(7), None);
    }
}
