//! [`Narrator`]: the demo's terminal output — step headers, indented narration, one status line
//! per reconcile cycle — coloured when standard output is a terminal.

use std::io::{IsTerminal as _, Write};
use std::sync::Mutex;

const BOLD: &str = "\u{1b}[1m";
const DIM: &str = "\u{1b}[2m";
const RED: &str = "\u{1b}[31m";
const GREEN: &str = "\u{1b}[32m";
const YELLOW: &str = "\u{1b}[33m";
const CYAN: &str = "\u{1b}[36m";
const RESET: &str = "\u{1b}[0m";

/// The tone of a line, which picks its colour and marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Plain narration.
    Plain,
    /// Something went as it should.
    Good,
    /// Something the reconciler is about to correct, or worth a look.
    Notice,
    /// Something failed.
    Bad,
}

/// Writes the demo's narration. Output errors (a closed pipe) are ignored: narration never stops
/// the demo.
///
/// ```
/// use gitops_examples::demo::{Narrator, Tone};
/// let narrator = Narrator::capturing(false);
/// narrator.step(1, 5, "The initial plan");
/// narrator.line(Tone::Good, "6 objects created");
/// assert!(narrator.captured().unwrap().contains("6 objects created"));
/// ```
pub struct Narrator {
    out: Mutex<Box<dyn Write + Send>>,
    captured: Option<Mutex<Vec<u8>>>,
    colour: bool,
}

impl std::fmt::Debug for Narrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Narrator")
            .field("colour", &self.colour)
            .finish_non_exhaustive()
    }
}

impl Narrator {
    /// Narrates on standard output, coloured when it is a terminal.
    #[must_use]
    pub fn stdout() -> Self {
        let colour = std::io::stdout().is_terminal();
        Self::with_colour(Box::new(std::io::stdout()), colour)
    }

    /// Narrates on standard output, coloured or not as asked.
    #[must_use]
    pub fn stdout_with_colour(colour: bool) -> Self {
        Self::with_colour(Box::new(std::io::stdout()), colour)
    }

    /// Keeps the narration in memory, for [`Narrator::captured`] (tests).
    #[must_use]
    pub fn capturing(colour: bool) -> Self {
        Self {
            out: Mutex::new(Box::new(std::io::sink())),
            captured: Some(Mutex::new(Vec::new())),
            colour,
        }
    }

    /// Says nothing.
    #[must_use]
    pub fn silent() -> Self {
        Self::with_colour(Box::new(std::io::sink()), false)
    }

    fn with_colour(out: Box<dyn Write + Send>, colour: bool) -> Self {
        Self {
            out: Mutex::new(out),
            captured: None,
            colour,
        }
    }

    /// Whether lines carry colours.
    #[must_use]
    pub fn colour(&self) -> bool {
        self.colour
    }

    /// What a narrator made with [`Narrator::capturing`] has said so far.
    #[must_use]
    pub fn captured(&self) -> Option<String> {
        self.captured.as_ref().map(|c| {
            String::from_utf8_lossy(&c.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        })
    }

    fn write(&self, text: &str) {
        if let Some(captured) = &self.captured {
            captured
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(text.as_bytes());
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.colour {
            format!("{style}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// The demo's title.
    pub fn title(&self, text: &str) {
        self.write(&format!("\n{}\n", self.paint(BOLD, text)));
    }

    /// A step header: `── Step 2/5 · The initial plan ──`.
    pub fn step(&self, number: usize, total: usize, title: &str) {
        let header = format!("── Step {number}/{total} · {title} ──");
        self.write(&format!(
            "\n{}\n",
            self.paint(&format!("{BOLD}{CYAN}"), &header)
        ));
    }

    /// One line of narration, indented, marked by its tone.
    pub fn line(&self, tone: Tone, text: &str) {
        let (style, marker) = match tone {
            Tone::Plain => ("", " "),
            Tone::Good => (GREEN, "✓"),
            Tone::Notice => (YELLOW, "!"),
            Tone::Bad => (RED, "✗"),
        };
        let marker = if style.is_empty() {
            marker.to_owned()
        } else {
            self.paint(style, marker)
        };
        self.write(&format!("  {marker} {text}\n"));
    }

    /// A block of text (a diff, `git show --stat`), indented as is; it may carry its own colours.
    pub fn block(&self, text: &str) {
        let mut out = String::new();
        for line in text.trim_end_matches('\n').lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
        self.write(&out);
    }

    /// A reconcile cycle's status line: `cycle 3 · <text>`, dimmed prefix, tone-coloured text.
    pub fn status(&self, cycle: u64, tone: Tone, text: &str) {
        let prefix = self.paint(DIM, &format!("cycle {cycle:>2} ·"));
        let text = match tone {
            Tone::Plain => text.to_owned(),
            Tone::Good => self.paint(GREEN, text),
            Tone::Notice => self.paint(YELLOW, text),
            Tone::Bad => self.paint(RED, text),
        };
        self.write(&format!("  {prefix} {text}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_output_has_no_escapes_and_coloured_output_has() {
        let plain = Narrator::capturing(false);
        plain.step(2, 5, "Plan");
        plain.status(1, Tone::Good, "applied");
        plain.block("a\nb\n");
        let text = plain.captured().unwrap();
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("── Step 2/5 · Plan ──"), "{text}");
        assert!(text.contains("cycle  1 · applied"), "{text}");
        assert!(text.contains("    a\n    b\n"), "{text:?}");

        let coloured = Narrator::capturing(true);
        coloured.line(Tone::Bad, "failed");
        let text = coloured.captured().unwrap();
        assert!(text.contains(&format!("{RED}✗{RESET} failed")), "{text:?}");
    }

    #[test]
    fn silent_says_nothing_and_keeps_nothing() {
        let silent = Narrator::silent();
        silent.line(Tone::Plain, "x");
        assert_eq!(silent.captured(), None);
    }
}
