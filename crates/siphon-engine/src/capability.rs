//! What a pipeline needs of its target beyond the contract every sink keeps,
//! checked against [`SinkCapabilities`] before a pass starts.

use siphon_core::{DeleteDetection, FullStrategy, Mode, PipelineSpec, Result, SinkCapabilities};

/// Refuses a pipeline whose settings need an ability its target lacks, before
/// anything is read or written: a `Config` error that names the target
/// connection, the setting (`delete_detection: key_diff`, `strategy: swap`,
/// with the table when a `tables_config` entry set it) and what to do instead.
/// Abilities the engine only uses to go faster (`native`, `another`) are not
/// needed: without them it takes the slower way.
pub fn check_target(spec: &PipelineSpec, caps: &SinkCapabilities) -> Result<()> {
    // The pipeline's own settings, then each table's overrides.
    let mut settings = vec![(
        None,
        spec.mode,
        spec.delete_detection,
        spec.strategy.and_then(|s| s.full()),
    )];
    for (table, c) in &spec.tables_config {
        let strategy = c
            .strategy
            .and_then(|s| s.full())
            .or_else(|| spec.strategy.and_then(|s| s.full()));
        settings.push((
            Some(table.as_str()),
            c.mode.unwrap_or(spec.mode),
            c.delete_detection.unwrap_or(spec.delete_detection),
            strategy,
        ));
    }
    for (table, mode, deletes, strategy) in settings {
        let on = |setting: &str| match table {
            Some(t) => format!("tables_config.{t}: {setting}"),
            None => setting.to_string(),
        };
        if mode == Mode::Incremental && deletes == DeleteDetection::KeyDiff && !caps.read_keys {
            return Err(SinkCapabilities::missing(
                &spec.target,
                "read_keys",
                &on("delete_detection: key_diff"),
                "it cannot list the keys it holds to find rows deleted at the source; use \
                 `mode: cdc` to carry deletes from the source's log, or `delete_detection: none`",
            ));
        }
        if matches!(mode, Mode::Full | Mode::RowCount)
            && strategy == Some(FullStrategy::Swap)
            && !caps.swap
        {
            return Err(SinkCapabilities::missing(
                &spec.target,
                "swap",
                &on("strategy: swap"),
                "it cannot load into a shadow table and swap it in; set `strategy: truncate`",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: serde_json::Value) -> PipelineSpec {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn key_diff_needs_read_keys_and_says_where_it_was_asked() {
        let polled = spec(serde_json::json!({
            "source": "app", "target": "out", "mode": "incremental", "cursor": "id",
            "delete_detection": "key_diff",
        }));
        let e = check_target(&polled, &SinkCapabilities::NONE).unwrap_err();
        assert_eq!(e.kind(), siphon_core::ErrorKind::Config);
        let text = e.to_string();
        assert!(
            text.contains("target `out` cannot serve `delete_detection: key_diff`")
                && text.contains("`read_keys`"),
            "{text}"
        );
        assert!(check_target(&polled, &SinkCapabilities::ALL).is_ok());

        let one_table = spec(serde_json::json!({
            "source": "app", "target": "out", "mode": "cdc",
            "tables_config": { "public.a": { "mode": "incremental", "cursor": "id",
                                              "delete_detection": "key_diff" } },
        }));
        let text = check_target(&one_table, &SinkCapabilities::NONE)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("tables_config.public.a: delete_detection: key_diff"),
            "{text}"
        );
        // key_diff on a cdc pipeline is not used: nothing is needed.
        let cdc = spec(serde_json::json!({
            "source": "app", "target": "out", "mode": "cdc", "delete_detection": "key_diff",
        }));
        assert!(check_target(&cdc, &SinkCapabilities::NONE).is_ok());
    }

    #[test]
    fn swap_needs_shadow_tables() {
        let swapped = spec(serde_json::json!({
            "source": "app", "target": "out", "mode": "full", "strategy": "swap",
        }));
        let text = check_target(&swapped, &SinkCapabilities::NONE)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("cannot serve `strategy: swap`") && text.contains("`swap`"),
            "{text}"
        );
        let caps = SinkCapabilities {
            swap: true,
            ..SinkCapabilities::NONE
        };
        assert!(check_target(&swapped, &caps).is_ok());
    }
}
