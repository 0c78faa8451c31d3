//! `chart`: draws `bench/results.svg` from the echo benchmark's JSON lines
//! (`bench/results/echo.jsonl`, written by `compare`).
//!
//! Usage: `chart [--input FILE] [--output FILE] [--run ID] [--syscalls-run ID]
//! [--scenario KEY]`.
//! By default it takes the latest `compare` run (the largest `run` id among the
//! throughput records) and the latest `compare --syscalls` run, and draws two
//! panels:
//!
//! 1. per scenario, each server's CPU time per echoed message as a ratio to
//!    tokio's (median over the rounds; below 1 is cheaper than tokio), with the
//!    line at 1;
//! 2. system calls per echoed message in one scenario (`--scenario`, default a)
//!    of the syscall run, per server,
//!    stacked by kind (reads, writes, `epoll_ctl`, `epoll_wait`, the rest).
//!
//! Discarded runs (the machine was busy, see `compare`) are left out.
#![deny(unsafe_code, missing_docs)]

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;

use edgeloop_bench::Args;
use edgeloop_bench::stats::median;
use plotters::prelude::*;
use serde_json::Value;

const USAGE: &str = "\
usage: chart [--input FILE] [--output FILE] [--run ID] [--syscalls-run ID] [--scenario KEY]

Draws the echo benchmark's chart from compare's JSON lines. Defaults:
--input bench/results/echo.jsonl --output bench/results.svg, the latest runs,
--scenario a (whose syscall counts the second panel shows).";

/// Servers in the order they are drawn; others found in the file follow.
const ORDER: [&str; 6] = ["edgeloop", "edgeloop-et", "tokio", "mio", "c", "smol"];

/// Bar colours, by position in the drawn order.
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

/// Syscall kinds of the second panel, with the names that count towards each.
const KINDS: [(&str, &[&str]); 4] = [
    ("read", &["recvfrom", "read", "recvmsg", "readv"]),
    ("write", &["sendto", "write", "sendmsg", "writev"]),
    ("epoll_ctl", &["epoll_ctl"]),
    ("epoll_wait", &["epoll_wait", "epoll_pwait", "epoll_pwait2"]),
];

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::from_env(
        &["input", "output", "run", "syscalls-run", "scenario"],
        USAGE,
    );
    let input = args.get("input", "bench/results/echo.jsonl".to_owned());
    let output = args.get("output", "bench/results.svg".to_owned());
    let run = args.text("run").map(|_| args.get("run", 0_u64));
    let syscalls_run = args
        .text("syscalls-run")
        .map(|_| args.get("syscalls-run", 0_u64));
    let scenario = args.get("scenario", "a".to_owned());

    let records: Vec<Value> = fs::read_to_string(&input)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let kind = |r: &Value, k: &str| r["kind"].as_str() == Some(k);
    let latest = |k: &str| {
        records
            .iter()
            .filter(|r| kind(r, k))
            .filter_map(|r| r["run"].as_u64())
            .max()
    };
    let run = run
        .or_else(|| latest("throughput"))
        .ok_or("no throughput records")?;
    let syscalls_run = syscalls_run
        .or_else(|| latest("syscalls"))
        .ok_or("no syscall records")?;

    let cpu = cpu_ratios(&records, run)?;
    let syscalls: Vec<&Value> = records
        .iter()
        .filter(|r| {
            kind(r, "syscalls")
                && r["run"].as_u64() == Some(syscalls_run)
                && r["scenario"].as_str() == Some(scenario.as_str())
        })
        .collect();
    draw(&output, run, &cpu, syscalls_run, &syscalls)?;
    println!("chart: wrote {output} (run {run}, syscalls run {syscalls_run})");
    Ok(())
}

/// Per scenario, per server: the median CPU per message over the run's rounds, as a
/// ratio to tokio's median.
type Ratios = BTreeMap<String, Vec<(String, f64)>>;

fn cpu_ratios(records: &[Value], run: u64) -> Result<Ratios, Box<dyn Error>> {
    let mut samples: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in records {
        if r["kind"].as_str() != Some("throughput")
            || r["run"].as_u64() != Some(run)
            || r["discarded"].as_bool() == Some(true)
        {
            continue;
        }
        let (Some(scenario), Some(server), Some(cpu)) = (
            r["scenario"].as_str(),
            r["label"].as_str().or(r["server"].as_str()),
            r["server_cpu_us_per_msg"].as_f64(),
        ) else {
            continue;
        };
        samples
            .entry((scenario.to_owned(), server.to_owned()))
            .or_default()
            .push(cpu);
    }
    let mut ratios = Ratios::new();
    for ((scenario, server), values) in &samples {
        let tokio = samples
            .get(&(scenario.clone(), "tokio".to_owned()))
            .ok_or_else(|| format!("run {run}, scenario {scenario}: no tokio rounds"))?;
        ratios
            .entry(scenario.clone())
            .or_default()
            .push((server.clone(), median(values) / median(tokio)));
    }
    for servers in ratios.values_mut() {
        servers.sort_by_key(|(name, _)| rank(name));
    }
    Ok(ratios)
}

/// Drawing position of a server.
fn rank(name: &str) -> (usize, String) {
    let at = ORDER.iter().position(|&s| s == name).unwrap_or(ORDER.len());
    (at, name.to_owned())
}

/// The colour of `server` (fixed by its place in [`ORDER`], so both panels agree).
fn colour(server: &str) -> RGBColor {
    COLOURS[rank(server).0.min(COLOURS.len() - 1)]
}

fn draw(
    output: &str,
    run: u64,
    cpu: &Ratios,
    syscalls_run: u64,
    syscalls: &[&Value],
) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(output, (900, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);

    // Panel 1: CPU per message, ratio to tokio.
    let scenarios: Vec<&String> = cpu.keys().collect();
    let servers: Vec<String> = {
        let mut all: Vec<String> = cpu
            .values()
            .flat_map(|v| v.iter().map(|(s, _)| s.clone()))
            .collect();
        all.sort_by_key(|s| rank(s));
        all.dedup();
        all
    };
    let top_max = cpu
        .values()
        .flat_map(|v| v.iter().map(|(_, r)| *r))
        .fold(1.0_f64, f64::max)
        * 1.6; // room above the bars for the legend
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("Echo: server CPU per message / tokio's (median of rounds, run {run})"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..scenarios.len() as f64, 0.0..top_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(scenarios.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            let centre = (x - x.floor() - 0.5).abs() < 1e-6;
            match scenarios.get(i) {
                Some(s) if centre => scenario_name(s).to_owned(),
                _ => String::new(),
            }
        })
        .y_desc("ratio to tokio (lower is better)")
        .draw()?;
    let width = 0.8 / servers.len() as f64;
    for (i, scenario) in scenarios.iter().enumerate() {
        for (server, ratio) in &cpu[*scenario] {
            let j = servers.iter().position(|s| s == server).unwrap_or(0) as f64;
            let x0 = i as f64 + 0.1 + j * width;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, *ratio)],
                colour(server).filled(),
            )))?;
        }
    }
    chart.draw_series(LineSeries::new(
        [(0.0, 1.0), (scenarios.len() as f64, 1.0)],
        BLACK.stroke_width(1),
    ))?;
    for server in &servers {
        let c = colour(server);
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(server.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    // Panel 2: syscalls per message, stacked by kind.
    let mut rows: Vec<(String, [f64; 5])> = syscalls
        .iter()
        .filter_map(|r| {
            let server = r["label"].as_str().or(r["server"].as_str())?.to_owned();
            let per_msg = r["syscalls_per_msg"].as_object()?;
            let mut stack = [0.0; 5];
            for (name, value) in per_msg {
                let value = value.as_f64().unwrap_or(0.0);
                let k = KINDS
                    .iter()
                    .position(|(_, names)| names.contains(&name.as_str()))
                    .unwrap_or(4);
                stack[k] += value;
            }
            Some((server, stack))
        })
        .collect();
    rows.sort_by_key(|(s, _)| rank(s));
    let scenario = syscalls
        .first()
        .and_then(|r| r["scenario"].as_str())
        .unwrap_or("a");
    let bottom_max = rows
        .iter()
        .map(|(_, s)| s.iter().sum::<f64>())
        .fold(1.0_f64, f64::max)
        * 1.15;
    let names: Vec<String> = rows.iter().map(|(s, _)| s.clone()).collect();
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            format!(
                "System calls per echoed message, scenario {} (run {syscalls_run})",
                scenario_name(scenario)
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..rows.len().max(1) as f64, 0.0..bottom_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            let centre = (x - x.floor() - 0.5).abs() < 1e-6;
            match names.get(i) {
                Some(s) if centre => s.clone(),
                _ => String::new(),
            }
        })
        .y_desc("syscalls per message")
        .draw()?;
    let shades = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(127, 127, 127),
    ];
    for (i, (_, stack)) in rows.iter().enumerate() {
        let mut base = 0.0;
        for (k, value) in stack.iter().enumerate() {
            let x0 = i as f64 + 0.25;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, base), (x0 + 0.5, base + value)],
                shades[k].filled(),
            )))?;
            base += value;
        }
        chart.draw_series(std::iter::once(Text::new(
            format!("{base:.2}"),
            (i as f64 + 0.38, base + bottom_max * 0.02),
            ("sans-serif", 13),
        )))?;
    }
    let labels = ["read", "write", "epoll_ctl", "epoll_wait", "other"];
    for (k, label) in labels.iter().enumerate() {
        let c = shades[k];
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A scenario's label: its key and load.
fn scenario_name(key: &str) -> &'static str {
    match key {
        "a" => "a: 50 x 64 B",
        "b" => "b: 50 x 16 KiB",
        "c" => "c: 1000 x 512 B",
        "d" => "d: 10 x 64 B, depth 16",
        _ => "?",
    }
}
