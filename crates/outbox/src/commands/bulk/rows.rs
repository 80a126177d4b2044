//! The recipients CSV of `outbox bulk` (DESIGN §6): a header row naming the columns, the
//! `email` column holding the address, every other column a merge token of that row.
//! Rows are checked one by one; a bad row is reported with its line number and skipped.

use std::collections::HashMap;
use std::io::Read;

use outbox_queue::{MergeValues, NewRecipient};

/// The address column; every row also gets it as a token, so `#email#` in the text shows
/// each recipient their own address.
pub const EMAIL_COLUMN: &str = "email";

/// Why the file cannot be used at all (as opposed to one bad row).
#[derive(Debug, thiserror::Error)]
pub enum CsvFileError {
    /// The header row could not be read.
    #[error("cannot read the header row: {0}")]
    Header(#[source] csv::Error),
    /// No column is named `email`.
    #[error("no `email` column in the header row (columns: {columns})")]
    NoEmailColumn {
        /// The columns found, comma-separated.
        columns: String,
    },
    /// A column name cannot be a `#NAME#` marker.
    #[error("column {name:?} is not a token name (letters, digits, _ - . only)")]
    BadColumn {
        /// The column as written.
        name: String,
    },
    /// Two columns have the same name.
    #[error("column {name:?} appears twice in the header row")]
    DuplicateColumn {
        /// The column name.
        name: String,
    },
}

/// One row that was not queued, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The 1-based line the row starts on.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads rows from a CSV source, yielding recipients or rejections.
pub struct RowReader<R: Read> {
    reader: csv::Reader<R>,
    columns: Vec<String>,
    email: usize,
    seen: HashMap<String, u64>,
    record: csv::StringRecord,
}

/// What reading one row gave.
#[derive(Debug)]
pub enum Row {
    /// A recipient to queue.
    Good(NewRecipient),
    /// A row that is reported and skipped.
    Bad(Rejected),
}

impl<R: Read> RowReader<R> {
    /// Reads and checks the header row.
    pub fn new(source: R) -> Result<Self, CsvFileError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(source);
        let headers = reader.headers().map_err(CsvFileError::Header)?.clone();
        let columns: Vec<String> = headers.iter().map(str::to_string).collect();
        let email = columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(EMAIL_COLUMN))
            .ok_or_else(|| CsvFileError::NoEmailColumn {
                columns: columns.join(", "),
            })?;
        for (i, name) in columns.iter().enumerate() {
            if i != email && !outbox_mime::is_token_name(name) {
                return Err(CsvFileError::BadColumn { name: name.clone() });
            }
            if columns[..i].iter().any(|c| c.eq_ignore_ascii_case(name)) {
                return Err(CsvFileError::DuplicateColumn { name: name.clone() });
            }
        }
        Ok(RowReader {
            reader,
            columns,
            email,
            seen: HashMap::new(),
            record: csv::StringRecord::new(),
        })
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_row(&mut self) -> Option<Row> {
        let line = self.reader.position().line();
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => Some(self.check()),
            Err(err) => {
                let line = err.position().map_or(line, |position| position.line());
                let reason = match err.kind() {
                    csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
                    _ => err.to_string(),
                };
                Some(Row::Bad(Rejected { line, reason }))
            }
        }
    }

    fn check(&mut self) -> Row {
        let line = self.record.position().map_or(0, |p| p.line());
        let bad = |reason: String| Row::Bad(Rejected { line, reason });
        if self.record.len() != self.columns.len() {
            return bad(format!(
                "{} fields, expected {} ({})",
                self.record.len(),
                self.columns.len(),
                self.columns.join(",")
            ));
        }
        let email = &self.record[self.email];
        let address = match outbox_mime::parse_address(email) {
            Ok(address) => address.addr_spec(),
            Err(err) => return bad(format!("invalid address {email:?}: {err}")),
        };
        if let Some(first) = self.seen.get(&address.to_ascii_lowercase()) {
            return bad(format!(
                "duplicate address {address} (first on line {first})"
            ));
        }
        self.seen.insert(address.to_ascii_lowercase(), line);
        let mut values: MergeValues = self
            .columns
            .iter()
            .zip(self.record.iter())
            .enumerate()
            .filter(|(i, _)| *i != self.email)
            .map(|(_, (name, value))| (name.clone(), value.to_string()))
            .collect();
        values.insert(EMAIL_COLUMN.to_string(), address.clone());
        Row::Good(NewRecipient::with_merge(address, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Row> {
        let mut reader = RowReader::new(text.as_bytes()).unwrap();
        std::iter::from_fn(|| reader.next_row()).collect()
    }

    #[test]
    fn good_and_bad_rows_with_line_numbers() {
        let out = rows(
            "email,First,Code\nann@x.test,Ann,1\n\"bob@y.test\",\"Bob, Jr\",2\nnot-an-address,X,3\n\
             c@x.test,only-two\nANN@x.test,Dup,4\n",
        );
        let Row::Good(ann) = &out[0] else { panic!() };
        assert_eq!(ann.address, "ann@x.test");
        let values = ann.merge.as_ref().unwrap();
        assert_eq!(values["First"], "Ann");
        assert_eq!(values["email"], "ann@x.test");
        let Row::Good(bob) = &out[1] else { panic!() };
        assert_eq!(bob.merge.as_ref().unwrap()["First"], "Bob, Jr");
        let bad: Vec<(u64, String)> = out[2..]
            .iter()
            .map(|row| match row {
                Row::Bad(r) => (r.line, r.reason.clone()),
                Row::Good(g) => panic!("{g:?}"),
            })
            .collect();
        assert_eq!(bad[0].0, 4);
        assert!(
            bad[0].1.starts_with("invalid address \"not-an-address\""),
            "{}",
            bad[0].1
        );
        assert_eq!(
            bad[1],
            (5, "2 fields, expected 3 (email,First,Code)".to_string())
        );
        assert_eq!(bad[2].0, 6);
        assert!(bad[2].1.starts_with("duplicate address"), "{}", bad[2].1);
    }

    #[test]
    fn header_problems() {
        let err = |text: &str| RowReader::new(text.as_bytes()).err().unwrap().to_string();
        assert_eq!(
            err("name,mail\n"),
            "no `email` column in the header row (columns: name, mail)"
        );
        assert!(err("email,first name\n").contains("\"first name\""));
        assert!(err("email,a,a\n").contains("twice"));
    }
}
