//! [`Table`]: aligned plain-text tables for the benchmarks' results.

use std::fmt::Write as _;

/// A table of text cells, printed with the first columns (one by default, see
/// [`left_columns`](Self::left_columns)) left-aligned and the others right-aligned
/// (they hold numbers).
///
/// # Examples
///
/// ```
/// use edgeloop_bench::Table;
///
/// let mut table = Table::new(&["metric", "edgeloop", "tokio"]);
/// table.row(["median", "52.0 µs", "1051.3 µs"]);
/// let text = table.render();
/// assert!(text.lines().count() == 3, "{text}");
/// ```
#[derive(Debug, Clone)]
pub struct Table {
    /// Column titles.
    header: Vec<String>,
    /// Rows, each as long as `header`.
    rows: Vec<Vec<String>>,
    /// How many leading columns hold labels, aligned left.
    left: usize,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            left: 1,
        }
    }

    /// Aligns the first `n` columns left (they hold labels, not numbers).
    pub fn left_columns(mut self, n: usize) -> Self {
        self.left = n;
        self
    }

    /// Adds a row.
    ///
    /// # Panics
    ///
    /// If it does not have one cell per column.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let row: Vec<String> = cells.into_iter().map(Into::into).collect();
        assert_eq!(
            row.len(),
            self.header.len(),
            "a table row needs one cell per column"
        );
        self.rows.push(row);
    }

    /// The table as text: header, a rule, then the rows.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|row| row[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let mut line = |row: &[String]| {
            let mut text = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c > 0 {
                    text.push_str("  ");
                }
                if c < self.left {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                } else {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                }
            }
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&self.header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule);
        for row in &self.rows {
            line(row);
        }
        out
    }

    /// Prints [`render`](Self::render) to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// The closing table of a side-by-side run: for each figure, the median over the
/// rounds of each runtime (`records[0]` edgeloop, `records[1]` tokio, as
/// [`Which::BOTH`](crate::Which::BOTH)) and their ratio.
///
/// # Examples
///
/// ```
/// let records = [vec![1.0, 3.0, 2.0], vec![4.0, 4.0, 5.0]];
/// let table = edgeloop_bench::table::medians_table(&records, [("wall", "ms", |r: &f64| *r)]);
/// assert!(table.render().contains("0.50x"), "{}", table.render());
/// ```
pub fn medians_table<R, F>(
    records: &[Vec<R>],
    rows: impl IntoIterator<Item = (&'static str, &'static str, F)>,
) -> Table
where
    F: Fn(&R) -> f64,
{
    use crate::stats::{median, one_decimal, ratio};
    let mut table =
        Table::new(&["figure", "unit", "edgeloop", "tokio", "edgeloop/tokio"]).left_columns(2);
    for (name, unit, get) in rows {
        let per_runtime: Vec<f64> = records
            .iter()
            .map(|runs| median(&runs.iter().map(&get).collect::<Vec<_>>()))
            .collect();
        table.row([
            name.to_owned(),
            unit.to_owned(),
            one_decimal(per_runtime[0]),
            one_decimal(per_runtime[1]),
            ratio(per_runtime[0], per_runtime[1]),
        ]);
    }
    table
}
