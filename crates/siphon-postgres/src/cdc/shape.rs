//! Which column of a table each column of a pgoutput Relation message is.
//!
//! A Relation message names a table's columns as they were when the change
//! was logged, without their `attnum`s, while the catalog (read now) may be
//! ahead: columns renamed, dropped or added since. Names known from the last
//! shape and the catalog's live names pin most columns; the others are matched
//! in order against the catalog's attributes between them, by type, preferring
//! a dropped attribute when unsure: a value taken for a dropped column is only
//! left out (the column's value is then read from the source), while a value
//! given to the wrong live column would be written.

use std::collections::{HashMap, HashSet};

use siphon_core::{Row, TableSchema, Value};

use crate::pgoutput::RelationColumn;
use crate::schema::Attribute;

/// The `attnum` of each Relation column, `None` for a column that no longer
/// exists (or cannot be told apart). `known` maps names to `attnum`s as the
/// last shape had them; `attributes` is the catalog's, dropped ones included.
pub(super) fn resolve(
    columns: &[RelationColumn],
    known: &HashMap<String, i64>,
    attributes: &[Attribute],
) -> Vec<Option<i64>> {
    let exists: HashSet<i64> = attributes.iter().map(|a| a.attnum).collect();
    let live: HashMap<&str, i64> = attributes
        .iter()
        .filter(|a| !a.dropped)
        .map(|a| (a.name.as_str(), a.attnum))
        .collect();
    let sent: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut used = HashSet::new();
    let mut ids: Vec<Option<i64>> = columns
        .iter()
        .map(|c| {
            let id = known
                .get(&c.name)
                .copied()
                .filter(|a| exists.contains(a))
                .or_else(|| live.get(c.name.as_str()).copied());
            id.filter(|a| used.insert(*a))
        })
        .collect();
    // Runs of unresolved columns, matched in order within the attnums between
    // their resolved neighbours; attnums only grow, so order is kept.
    let mut j = 0;
    while j < columns.len() {
        if ids[j].is_some() {
            j += 1;
            continue;
        }
        let start = j;
        while j < columns.len() && ids[j].is_none() {
            j += 1;
        }
        let lo = ids[..start]
            .iter()
            .rev()
            .flatten()
            .next()
            .copied()
            .unwrap_or(0);
        let hi = ids[j..]
            .iter()
            .flatten()
            .next()
            .copied()
            .unwrap_or(i64::MAX);
        let candidates: Vec<&Attribute> = attributes
            .iter()
            .filter(|a| a.attnum > lo && a.attnum < hi && !used.contains(&a.attnum))
            // A live column whose name the message also sends is that column.
            .filter(|a| a.dropped || !sent.contains(a.name.as_str()))
            .collect();
        let mut next = 0;
        for k in start..j {
            let c = &columns[k];
            let found = candidates[next.min(candidates.len())..]
                .iter()
                .position(|a| a.dropped || a.type_oid == c.type_oid);
            if let Some(p) = found {
                let a = candidates[next + p];
                next += p + 1;
                used.insert(a.attnum);
                // A dropped column's value is not carried.
                ids[k] = Some(a.attnum);
            }
        }
    }
    // A column dropped since carries no value.
    let dropped: HashSet<i64> = attributes
        .iter()
        .filter(|a| a.dropped)
        .map(|a| a.attnum)
        .collect();
    ids.into_iter()
        .map(|id| id.filter(|a| !dropped.contains(a)))
        .collect()
}

/// `row`, of the shape `from`, as a row of the shape `to` (columns matched by
/// [`TableSchema::same_column`]); the positions of `to` it has no value for
/// (new columns, and columns whose type changed) are returned beside it.
pub(super) fn reshape_row(from: &TableSchema, to: &TableSchema, row: &Row) -> (Row, Vec<usize>) {
    let mut out = Vec::with_capacity(to.columns.len());
    let mut missing = Vec::new();
    for (i, col) in to.columns.iter().enumerate() {
        match from.same_column(to, i) {
            Some(j) if from.columns[j].data_type.kind == col.data_type.kind => {
                out.push(row.get(j).cloned().unwrap_or(Value::Null))
            }
            _ => {
                out.push(Value::Null);
                missing.push(i);
            }
        }
    }
    (out, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(cols: &[(&str, u32)]) -> Vec<RelationColumn> {
        cols.iter()
            .map(|(n, t)| RelationColumn {
                flags: 0,
                name: n.to_string(),
                type_oid: *t,
                type_modifier: -1,
            })
            .collect()
    }

    fn attrs(list: &[(i64, &str, u32)]) -> Vec<Attribute> {
        list.iter()
            .map(|(n, name, t)| Attribute {
                attnum: *n,
                name: name.to_string(),
                dropped: *t == 0,
                type_oid: *t,
            })
            .collect()
    }

    #[test]
    fn an_old_shape_maps_onto_a_catalog_that_renamed_and_dropped_since() {
        // (id int, b text, d text); then b renamed to c, d dropped.
        let catalog = attrs(&[
            (1, "id", 23),
            (2, "c", 25),
            (3, "........pg.dropped.3........", 0),
        ]);
        let known = HashMap::from([("id".to_string(), 1), ("c".to_string(), 2)]);
        let ids = resolve(&rel(&[("id", 23), ("b", 25), ("d", 25)]), &known, &catalog);
        assert_eq!(ids, vec![Some(1), Some(2), None]);
    }

    #[test]
    fn a_drop_and_an_add_are_not_taken_for_a_rename() {
        // (id int, b text); then b dropped and c text added.
        let catalog = attrs(&[
            (1, "id", 23),
            (2, "........pg.dropped.2........", 0),
            (3, "c", 25),
        ]);
        let known = HashMap::from([("id".to_string(), 1), ("b".to_string(), 2)]);
        // The old shape: b is the dropped attribute.
        let ids = resolve(&rel(&[("id", 23), ("b", 25)]), &known, &catalog);
        assert_eq!(ids, vec![Some(1), None]);
        // The new shape: c is new.
        let ids = resolve(&rel(&[("id", 23), ("c", 25)]), &known, &catalog);
        assert_eq!(ids, vec![Some(1), Some(3)]);
    }

    #[test]
    fn a_rename_keeps_its_attnum() {
        let catalog = attrs(&[(1, "id", 23), (2, "after", 25), (3, "n", 23)]);
        let known = HashMap::from([
            ("id".to_string(), 1),
            ("before".to_string(), 2),
            ("n".to_string(), 3),
        ]);
        let ids = resolve(
            &rel(&[("id", 23), ("after", 25), ("n", 23)]),
            &known,
            &catalog,
        );
        assert_eq!(ids, vec![Some(1), Some(2), Some(3)]);
    }
}
