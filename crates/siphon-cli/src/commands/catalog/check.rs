//! `siphon connection test NAME`: opens the connection and prints what
//! answered, then each setting and privilege replication needs there (ok,
//! missing with its fix, or a note), from [`siphon::probe::probe`].

use siphon::probe::{probe, Probe};
use siphon_core::{Error, Result, StateStore};

use crate::connect::registry;

/// Tests the stored connection `name`: prints the report (as JSON with
/// `json`). Reaching the server is success: a missing setting or privilege
/// is a warning with its fix, since only `cdc` needs them. An error when the
/// connection is unknown or cannot be opened.
pub async fn test<St: StateStore>(state: &St, name: &str, json: bool) -> Result<()> {
    let connections = state.connections().await?;
    let written = connections
        .get(name)
        .ok_or_else(|| Error::config(format!("unknown connection `{name}`")))?;
    let key = format!("connections.{name}");
    // Checked as the config file's URLs are (the CLI's registry parses them
    // so), then opened through the registry.
    let registry = registry();
    let url = registry.parse_url(&key, written)?;
    let report = probe(&registry, name, &url).await?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::internal("writing the report as JSON").source(e))?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The report for people: what answered, then one line per check with its
/// fix or note under it, then what the missing ones mean.
pub fn render(p: &Probe) -> String {
    let can = p.can_be.join(", ");
    let mut out = if !p.reached {
        format!(
            "connection {} ({}): not opened (an event target is opened when a pipeline writes to \
             it); can be {can}\n",
            p.connection, p.url
        )
    } else {
        match &p.server {
            Some(server) => format!(
                "connection {} ({}): reached {server}; can be {can}\n",
                p.connection, p.url
            ),
            None => format!(
                "connection {} ({}): reached; can be {can}\n",
                p.connection, p.url
            ),
        }
    };
    if p.checks.is_empty() {
        return out;
    }
    let width = p.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &p.checks {
        let mark = if !c.ok {
            "missing"
        } else if c.note.is_some() {
            "note"
        } else {
            "ok"
        };
        out.push_str(&format!(
            "  {mark:<8} {:<width$}  {}",
            c.name,
            c.value,
            width = width
        ));
        if !c.ok {
            out.push_str(&format!("  ({} needs {})", c.needed_for, c.needed));
        }
        out.push('\n');
        if let Some(fix) = &c.fix {
            out.push_str(&format!("  {:<8} fix: {fix}\n", ""));
        }
        if let Some(note) = &c.note {
            out.push_str(&format!("  {:<8} {note}\n", ""));
        }
    }
    let missing = |cdc: bool| -> Vec<&str> {
        p.missing()
            .filter(|c| (c.needed_for == "cdc") == cdc)
            .map(|c| c.name.as_str())
            .collect()
    };
    let (for_cdc, for_all) = (missing(true), missing(false));
    if for_cdc.is_empty() && for_all.is_empty() {
        out.push_str("ready for every mode, cdc included\n");
    }
    if !for_all.is_empty() {
        out.push_str(&format!(
            "warning: every mode needs what is missing ({}): apply each fix above before a \
             pipeline reads from this connection\n",
            for_all.join(", ")
        ));
    }
    if !for_cdc.is_empty() {
        out.push_str(&format!(
            "warning: cdc from this connection needs what is missing ({}): apply each fix above; \
             full and incremental pipelines need none of it\n",
            for_cdc.join(", ")
        ));
    }
    out
}
