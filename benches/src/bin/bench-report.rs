//! `bench-report`: the tool `scripts/bench` drives around the benches.
//!
//! - `bench-report peers`: builds every Go peer into its cache when missing and prints each
//!   binary's path and how long its build took;
//! - `bench-report gather --from <dir> --out <results.json> [--quick] [--tool name=command...]
//!   <bench>...`: gathers each bench's `<dir>/<bench>.json` with the machine, date, commit and
//!   versions into one file; fails when a bench recorded nothing;
//! - `bench-report table --results <results.json> --markdown <RESULTS.md> [--readme <README.md>]`:
//!   writes the Markdown generated from the results, and the README's table between its markers.
//!
//! ```sh
//! cargo run -p gitops-benches --bin bench-report -- table --results benches/results.json \
//!     --markdown benches/RESULTS.md --readme README.md
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use gitops_benches::peers::Peer;
use gitops_benches::report::{self, RunResults};

/// Gathers the benches' results and generates their table.
#[derive(Debug, Parser)]
#[command(name = "bench-report")]
struct Args {
    #[command(subcommand)]
    command: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Builds every Go peer when missing; prints each binary and how long its build took.
    Peers,
    /// Gathers each bench's results with the machine, date, commit and versions.
    Gather {
        /// The directory the benches wrote to (GITOPS_BENCH_OUT).
        #[arg(long)]
        from: PathBuf,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// The run was reduced (`scripts/bench --quick`).
        #[arg(long)]
        quick: bool,
        /// A program whose version to record: `name=command args...` (the first line printed).
        #[arg(long = "tool", value_name = "NAME=COMMAND")]
        tools: Vec<String>,
        /// The benches that ran, in order.
        #[arg(required = true)]
        benches: Vec<String>,
    },
    /// Writes the Markdown table generated from a results file.
    Table {
        /// The results file (`benches/results.json`).
        #[arg(long)]
        results: PathBuf,
        /// The Markdown page to write (`benches/RESULTS.md`).
        #[arg(long)]
        markdown: PathBuf,
        /// A README whose table between the markers is replaced.
        #[arg(long)]
        readme: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut text = format!("bench-report: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{text}");
            ExitCode::FAILURE
        }
    }
}

fn run(action: Action) -> Result<(), Box<dyn std::error::Error>> {
    match action {
        Action::Peers => {
            for peer in Peer::ALL {
                let started = Instant::now();
                let binary = peer.ensure()?;
                println!(
                    "{}: {} ({:.1} s)",
                    peer.name(),
                    binary.display(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Action::Gather {
            from,
            out,
            quick,
            tools,
            benches,
        } => {
            let tools = tools
                .iter()
                .map(|tool| {
                    let (name, command) = tool
                        .split_once('=')
                        .ok_or_else(|| format!("--tool {tool}: expected NAME=COMMAND"))?;
                    let command: Vec<String> =
                        command.split_whitespace().map(str::to_owned).collect();
                    Ok((name.to_owned(), command))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let run = RunResults {
                environment: report::environment(&workspace, &tools)?,
                quick,
                benches: report::gather(&from, &benches)?,
            };
            if let Some(bench) = run.benches.iter().find(|bench| bench.quick != quick) {
                return Err(format!(
                    "bench {} ran with quick={} but the run is gathered with quick={quick}",
                    bench.bench, bench.quick
                )
                .into());
            }
            run.write(&out)?;
            println!("wrote {}", out.display());
        }
        Action::Table {
            results,
            markdown,
            readme,
        } => {
            let run = RunResults::read(&results)?;
            std::fs::write(&markdown, report::results_markdown(&run))
                .map_err(|e| format!("writing {}: {e}", markdown.display()))?;
            println!("wrote {}", markdown.display());
            if let Some(readme) = readme {
                let table = format!(
                    "{}\n{}\n",
                    report::markdown_table(&run),
                    report::provenance(&run)
                );
                report::update_readme(&readme, &table)?;
                println!("updated the table in {}", readme.display());
            }
        }
    }
    Ok(())
}
