//! The config file: a TOML file with a key for every flag (`--config FILE` or `CALLBOARD_CONFIG`).
//!
//! A key is a flag's long name without the dashes (`max-batch = 10`, `location = ["a", "b"]`,
//! `no-introspection = true`); a table of a repeatable `KEY=VALUE` flag gives one value per entry
//! (`[kafka-property]` `"security.protocol" = "SASL_SSL"`). Top-level keys apply to every command
//! that has the flag, so one file serves `serve`, `import` and `project`; a `[serve]` (or
//! `[import]`, …) table applies to that command only. A key no command knows is an error naming
//! the file and the key — a typo must not be silently ignored.
//!
//! Precedence, highest first: the command line, the flag's environment variable, the config file,
//! the default. The file is applied by rewriting the argument list before clap parses it: each
//! key not already given on the command line or in the environment becomes `--key=value` right
//! after the subcommand, so clap alone validates and converts every value, with the same messages
//! as for flags.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Command;

/// The flag and variable naming the config file.
const FLAG: &str = "config";
const VARIABLE: &str = "CALLBOARD_CONFIG";

/// `argv` with the config file's settings inserted after the subcommand. Unchanged when no config
/// file is named or no subcommand is given (`callboard --help`). `env` reads an environment
/// variable (a parameter, so tests need not change the process's environment).
pub fn apply(command: &Command, argv: Vec<OsString>, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Vec<OsString>> {
    let Some(path) = config_path(&argv).or_else(|| env(VARIABLE).map(PathBuf::from)) else {
        return Ok(argv);
    };
    let Some((at, subcommand)) = find_subcommand(command, &argv) else {
        return Ok(argv);
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let settings = settings_for(command, subcommand, &table, &path)?;
    let given = &argv[at + 1..];
    let mut inserted = Vec::new();
    for (long, value) in settings {
        let arg = subcommand
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .expect("settings_for keeps only the subcommand's flags");
        if mentions(given, &long) || arg.get_env().is_some_and(|name| env(&name.to_string_lossy()).is_some()) {
            continue;
        }
        for text in values(arg, &long, &value, &path)? {
            inserted.push(match text {
                Some(text) => OsString::from(format!("--{long}={text}")),
                None => OsString::from(format!("--{long}")),
            });
        }
    }
    let mut out = argv;
    out.splice(at + 1..at + 1, inserted);
    Ok(out)
}

/// The value of `--config FILE` or `--config=FILE`, wherever it stands.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let prefix = format!("--{FLAG}=");
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            return None;
        }
        if text == format!("--{FLAG}") {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix(&prefix) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// The index of the subcommand in `argv`, and its definition: the first argument that is not a
/// flag (or the value of `--config`).
fn find_subcommand<'c>(command: &'c Command, argv: &[OsString]) -> Option<(usize, &'c Command)> {
    let mut index = 1;
    while index < argv.len() {
        let text = argv[index].to_string_lossy();
        if text == format!("--{FLAG}") {
            index += 2;
            continue;
        }
        if !text.starts_with('-') {
            return command.find_subcommand(text.as_ref()).map(|sub| (index, sub));
        }
        index += 1;
    }
    None
}

/// Whether the command line already gives `--long` (as `--long`, `--long=…` or `--long …`).
fn mentions(given: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    given
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a.to_string_lossy().as_ref() == flag || a.to_string_lossy().starts_with(&with_value))
}

/// The file's settings for `subcommand`: top-level keys it has a flag for (keys only other
/// commands know are left to them), then its own table, which overrides them.
fn settings_for(
    root: &Command,
    subcommand: &Command,
    table: &toml::Table,
    path: &Path,
) -> Result<BTreeMap<String, toml::Value>> {
    let has = |command: &Command, key: &str| {
        command
            .get_arguments()
            .any(|a| a.get_long() == Some(key) && a.get_long() != Some(FLAG))
    };
    let mut settings = BTreeMap::new();
    for (key, value) in table {
        if let Some(section) = root.find_subcommand(key) {
            let toml::Value::Table(own) = value else {
                bail!("{}: `{key}` must be a table of `{key}`'s flags", path.display());
            };
            for (key, _) in own {
                if !has(section, key) {
                    bail!(
                        "{}: unknown key `{key}` in [{}]: `callboard {} --help` lists its flags",
                        path.display(),
                        section.get_name(),
                        section.get_name()
                    );
                }
            }
            continue;
        }
        if !root.get_subcommands().any(|command| has(command, key)) {
            bail!(
                "{}: unknown key `{key}`: no command has a flag `--{key}`",
                path.display()
            );
        }
        if has(subcommand, key) {
            settings.insert(key.clone(), value.clone());
        }
    }
    if let Some(toml::Value::Table(own)) = table.get(subcommand.get_name()) {
        for (key, value) in own {
            settings.insert(key.clone(), value.clone());
        }
    }
    Ok(settings)
}

/// The command-line values of one key: `None` for a bare switch.
fn values(arg: &clap::Arg, long: &str, value: &toml::Value, path: &Path) -> Result<Vec<Option<String>>> {
    let switch = !arg.get_action().takes_values();
    let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
    let scalar = |value: &toml::Value| -> Result<String> {
        Ok(match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                bail!("{}: `{long}` takes a single value here", path.display())
            }
        })
    };
    Ok(match value {
        toml::Value::Boolean(on) if switch => {
            if *on {
                vec![None]
            } else {
                Vec::new()
            }
        }
        _ if switch => bail!("{}: `{long}` is a switch: write `{long} = true`", path.display()),
        toml::Value::Array(items) if repeatable => items.iter().map(|v| scalar(v).map(Some)).collect::<Result<_>>()?,
        toml::Value::Table(entries) if repeatable => entries
            .iter()
            .map(|(key, v)| scalar(v).map(|v| Some(format!("{key}={v}"))))
            .collect::<Result<_>>()?,
        toml::Value::Array(_) | toml::Value::Table(_) => {
            bail!("{}: `{long}` takes one value, not a list", path.display())
        }
        scalar_value => vec![Some(scalar(scalar_value)?)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("callboard")
            .arg(Arg::new("config").long("config").global(true))
            .subcommand(
                Command::new("serve")
                    .arg(Arg::new("listen").long("listen").env("CALLBOARD_LISTEN"))
                    .arg(Arg::new("location").long("location").action(ArgAction::Append))
                    .arg(
                        Arg::new("kafka-property")
                            .long("kafka-property")
                            .action(ArgAction::Append),
                    )
                    .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue)),
            )
            .subcommand(Command::new("validate").arg(Arg::new("format").long("format")))
    }

    fn run(file: &str, argv: &[&str], env: &[(&str, &str)]) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callboard.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        argv.insert(1, OsString::from(format!("--config={}", path.display())));
        let lookup = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v));
        let out = apply(&command(), argv, &lookup)?;
        Ok(out
            .into_iter()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect())
    }

    #[test]
    fn keys_become_flags_after_the_subcommand() {
        let out = run(
            "listen = \"0.0.0.0:80\"\nlocation = [\"a\", \"b\"]\nquiet = true\n[kafka-property]\n\"security.protocol\" = \"SASL_SSL\"\n",
            &["callboard", "serve", "--location", "c"],
            &[],
        )
        .unwrap();
        // `location` is on the command line, so the file's list is not added to it.
        assert_eq!(
            out,
            [
                "serve",
                "--kafka-property=security.protocol=SASL_SSL",
                "--listen=0.0.0.0:80",
                "--quiet",
                "--location",
                "c"
            ]
        );
    }

    #[test]
    fn the_environment_beats_the_file() {
        let out = run(
            "listen = \"0.0.0.0:80\"\n",
            &["callboard", "serve"],
            &[("CALLBOARD_LISTEN", "127.0.0.1:1")],
        )
        .unwrap();
        assert_eq!(out, ["serve"]);
    }

    #[test]
    fn sections_apply_to_their_command_and_shared_keys_to_those_that_have_them() {
        let file = "listen = \"0.0.0.0:80\"\nformat = \"text\"\n[validate]\nformat = \"jsonl\"\n";
        let validate = run(file, &["callboard", "validate", "x.yaml"], &[]).unwrap();
        assert_eq!(validate, ["validate", "--format=jsonl", "x.yaml"]);
        let serve = run(file, &["callboard", "serve"], &[]).unwrap();
        assert_eq!(serve, ["serve", "--listen=0.0.0.0:80"]);
    }

    #[test]
    fn unknown_keys_and_wrong_shapes_are_errors_naming_the_file_and_key() {
        let error = run("lissen = \"x\"\n", &["callboard", "serve"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("callboard.toml") && error.contains("`lissen`"),
            "{error}"
        );
        let error = run("[serve]\nformat = \"jsonl\"\n", &["callboard", "serve"], &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("`format` in [serve]"), "{error}");
        let error = run("listen = [\"a\"]\n", &["callboard", "serve"], &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("`listen` takes one value"), "{error}");
        let error = run("quiet = \"yes\"\n", &["callboard", "serve"], &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("`quiet` is a switch"), "{error}");
        let error = run("listen = \n", &["callboard", "serve"], &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("callboard.toml"), "{error}");
    }

    #[test]
    fn a_false_switch_adds_nothing() {
        assert_eq!(run("quiet = false\n", &["callboard", "serve"], &[]).unwrap(), ["serve"]);
    }
}
