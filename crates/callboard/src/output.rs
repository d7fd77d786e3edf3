//! Terminal styling: colour only when writing to a terminal and `NO_COLOR` is unset.

use std::io::IsTerminal;

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when standard output is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// ANSI styles, or nothing.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Decides whether to colour standard output.
    pub fn for_stdout(choice: ColorChoice) -> Self {
        let on = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        Self { on }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Bold.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Bold red, for errors.
    pub fn error(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    /// Green, for success.
    pub fn ok(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Cyan, for hints.
    pub fn hint(self, text: &str) -> String {
        self.paint("36", text)
    }
}
