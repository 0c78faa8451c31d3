//! [`Args`]: the benchmarks' command line, `--name value` pairs and nothing else,
//! hand-parsed to keep the crate free of dependencies besides the two runtimes.

use std::str::FromStr;

/// Parsed `--name value` pairs.
///
/// # Examples
///
/// ```
/// use edgeloop_bench::Args;
///
/// let args = Args::parse(["--rounds", "7"].map(String::from), &["rounds", "timers"]).unwrap();
/// assert_eq!(args.get("rounds", 5_usize), 7);
/// assert_eq!(args.get("timers", 1000_usize), 1000);
/// assert!(Args::parse(["--nope", "1"].map(String::from), &["rounds"]).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// Each option's name (without `--`) and its value, in command-line order.
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Parses `args` (without the program name), accepting only the options in
    /// `known`.
    ///
    /// # Errors
    ///
    /// A message naming the argument that is unknown, or an option without a value.
    pub fn parse<I: IntoIterator<Item = String>>(args: I, known: &[&str]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .filter(|name| known.contains(name))
                .ok_or_else(|| format!("unknown argument `{arg}`"))?;
            let value = args
                .next()
                .ok_or_else(|| format!("`--{name}` needs a value"))?;
            pairs.push((name.to_owned(), value));
        }
        Ok(Args { pairs })
    }

    /// Parses this process's arguments; on error prints it and `usage`, then exits
    /// with status 2.
    pub fn from_env(known: &[&str], usage: &str) -> Self {
        Self::parse(std::env::args().skip(1), known).unwrap_or_else(|message| {
            eprintln!("error: {message}\n{usage}");
            std::process::exit(2)
        })
    }

    /// The raw value of `--name`, the last one if given more than once.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `--name` parsed as `T`, or `default` when absent.
    ///
    /// # Panics
    ///
    /// If the value does not parse as `T`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.text(name) {
            None => default,
            Some(text) => text
                .parse()
                .unwrap_or_else(|_| panic!("`--{name} {text}`: not a valid value")),
        }
    }
}
