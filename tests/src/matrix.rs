//! Reachability results as rows of (from, to, proto, reachable), compared as
//! sets keyed by (from, to, proto) and rendered as a text table.

use std::{collections::BTreeMap, fmt};

/// What a row probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    V4,
    V6,
    Arp,
    Ndisc,
    Bcast,
}

impl Proto {
    pub const ALL: [Proto; 5] = [Proto::V4, Proto::V6, Proto::Arp, Proto::Ndisc, Proto::Bcast];

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::V4 => "v4",
            Proto::V6 => "v6",
            Proto::Arp => "arp",
            Proto::Ndisc => "ndisc",
            Proto::Bcast => "bcast",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub reachable: bool,
}

type Key = (String, String, Proto);

/// Rows in insertion order (for display); a later row with the same
/// (from, to, proto) replaces the earlier one. `==` ignores order.
#[derive(Clone, Default)]
pub struct Matrix {
    rows: Vec<Row>,
}

impl Matrix {
    pub fn new() -> Matrix {
        Matrix::default()
    }

    /// Builds a matrix, typically the expected one, from literal rows.
    pub fn from_rows(rows: &[(&str, &str, Proto, bool)]) -> Matrix {
        let mut m = Matrix::new();
        for &(from, to, proto, reachable) in rows {
            m.push(from, to, proto, reachable);
        }
        m
    }

    pub fn push(&mut self, from: &str, to: &str, proto: Proto, reachable: bool) {
        let row = Row {
            from: from.to_owned(),
            to: to.to_owned(),
            proto,
            reachable,
        };
        match self
            .rows
            .iter_mut()
            .find(|r| r.from == from && r.to == to && r.proto == proto)
        {
            Some(old) => *old = row,
            None => self.rows.push(row),
        }
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn get(&self, from: &str, to: &str, proto: Proto) -> Option<bool> {
        self.rows
            .iter()
            .find(|r| r.from == from && r.to == to && r.proto == proto)
            .map(|r| r.reachable)
    }

    fn by_key(&self) -> BTreeMap<Key, bool> {
        self.rows
            .iter()
            .map(|r| ((r.from.clone(), r.to.clone(), r.proto), r.reachable))
            .collect()
    }

    /// One line per (from, to) pair, one column per protocol present:
    /// `yes`, `no`, or blank when not probed.
    pub fn to_table(&self) -> String {
        let protos: Vec<Proto> = Proto::ALL
            .into_iter()
            .filter(|p| self.rows.iter().any(|r| r.proto == *p))
            .collect();
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for r in &self.rows {
            if !pairs.contains(&(&r.from, &r.to)) {
                pairs.push((&r.from, &r.to));
            }
        }
        let mut lines = vec![
            ["from", "to"]
                .into_iter()
                .chain(protos.iter().map(|p| p.as_str()))
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ];
        for (from, to) in pairs {
            let cells = protos.iter().map(|&p| match self.get(from, to, p) {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            });
            lines.push(
                [from, to]
                    .into_iter()
                    .chain(cells)
                    .map(str::to_owned)
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..lines[0].len())
            .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for line in lines {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    /// The rows where `self` (actual) differs from `want`, one per line;
    /// empty when the matrices are equal.
    pub fn diff(&self, want: &Matrix) -> String {
        let (got, want) = (self.by_key(), want.by_key());
        let show = |v: Option<&bool>| match v {
            Some(true) => "reachable",
            Some(false) => "unreachable",
            None => "not probed",
        };
        let mut keys: Vec<&Key> = want.keys().chain(got.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| got.get(*k) != want.get(*k))
            .map(|k @ (from, to, proto)| {
                format!(
                    "{from} -> {to} {proto}: want {}, got {}\n",
                    show(want.get(k)),
                    show(got.get(k))
                )
            })
            .collect()
    }

    /// Panics, showing the difference and both tables, unless `self == want`.
    #[track_caller]
    pub fn assert_eq(&self, want: &Matrix) {
        let diff = self.diff(want);
        if !diff.is_empty() {
            panic!(
                "reachability differs:\n{diff}\nwant:\n{}\ngot:\n{}",
                want.to_table(),
                self.to_table()
            );
        }
    }
}

impl PartialEq for Matrix {
    fn eq(&self, other: &Matrix) -> bool {
        self.by_key() == other.by_key()
    }
}

impl Eq for Matrix {}

/// The table, so `assert_eq!` failures are readable.
impl fmt::Debug for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{}", self.to_table())
    }
}

impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_table())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_ignores_order_and_diff_names_rows() {
        let a = Matrix::from_rows(&[
            ("ext", "c1", Proto::V4, true),
            ("c1", "c2", Proto::Arp, false),
        ]);
        let b = Matrix::from_rows(&[
            ("c1", "c2", Proto::Arp, false),
            ("ext", "c1", Proto::V4, true),
        ]);
        assert_eq!(a, b);
        assert_eq!(a.diff(&b), "");

        let c = Matrix::from_rows(&[("ext", "c1", Proto::V4, false)]);
        assert_ne!(a, c);
        assert_eq!(
            c.diff(&a),
            "c1 -> c2 arp: want unreachable, got not probed\n\
             ext -> c1 v4: want reachable, got unreachable\n"
        );
    }

    #[test]
    fn table_has_a_column_per_protocol() {
        let mut m = Matrix::new();
        m.push("ext", "c1", Proto::V4, true);
        m.push("ext", "c1", Proto::V6, false);
        m.push("node", "c1", Proto::V4, false);
        assert_eq!(
            m.to_table(),
            "from  to  v4   v6\n\
             ext   c1  yes  no\n\
             node  c1  no\n"
        );
    }
}
