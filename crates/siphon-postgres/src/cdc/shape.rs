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
use std::sync::Arc;

use siphon_core::{Change, Op, Result, Row, TableName, TableSchema, Value};

use super::PostgresChangeStream;
use crate::pgoutput::RelationColumn;
use crate::schema::{self, Attribute};
use crate::types::PgType;

#[derive(Debug, Clone)]
pub(super) struct Relation {
    pub(super) table: Arc<TableSchema>,
    /// Per message column: its position in `table.columns` and the type to
    /// decode its values with (`None` when the column's type changed since:
    /// its value is then read from the source); `None` for a column the table
    /// no longer has.
    pub(super) columns: Vec<Option<(usize, Option<PgType>)>>,
    /// The message's columns as sent (name, type oid, type modifier) and the
    /// `attnum` each was taken for, to tell the next message's shape from it.
    pub(super) sent: Vec<(String, u32, i32)>,
    pub(super) ids: Vec<Option<i64>>,
}

impl PostgresChangeStream {
    /// Learns how a Relation message's columns map onto the table's shape.
    /// A message whose columns differ from the last one's (or, first, from the
    /// shape the stream was opened with) is matched by `attnum` against the
    /// catalog (see [`super::shape`]); when the catalog's shape differs from
    /// the known one (columns added, renamed, dropped or retyped, another
    /// primary key), the catalog's becomes the table's shape, announced by an
    /// [`Op::Schema`] change, and the rows of the batch read so far are
    /// reshaped to it.
    pub(super) async fn relation(
        &mut self,
        oid: u32,
        namespace: &str,
        name: &str,
        columns: &[RelationColumn],
        out: &mut Vec<Change>,
    ) -> Result<()> {
        let tname = TableName::new(
            Some(if namespace.is_empty() {
                "pg_catalog"
            } else {
                namespace
            }),
            name,
        );
        let Some((schema, types)) = self.known.get(&tname).cloned() else {
            self.relations.insert(oid, None);
            return Ok(());
        };
        let sent: Vec<(String, u32, i32)> = columns
            .iter()
            .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
            .collect();
        let previous = self.relations.get(&oid).cloned().flatten();
        // Generated columns are never sent (PostgreSQL 15).
        let carried: Vec<usize> = (0..schema.columns.len())
            .filter(|&i| !schema.columns[i].generated)
            .collect();
        let unchanged = match &previous {
            Some(p) => p.sent == sent && Arc::ptr_eq(&p.table, &schema),
            None => {
                carried.len() == columns.len()
                    && carried.iter().zip(columns).all(|(&i, c)| {
                        schema.columns[i].name == c.name && types[i].oid == c.type_oid
                    })
            }
        };
        if unchanged {
            let map = match &previous {
                Some(p) => p.columns.clone(),
                None => carried
                    .iter()
                    .map(|&i| Some((i, Some(types[i].clone()))))
                    .collect(),
            };
            let ids = match &previous {
                Some(p) => p.ids.clone(),
                None => carried
                    .iter()
                    .map(|&i| schema.columns[i].source_id)
                    .collect(),
            };
            self.relations.insert(
                oid,
                Some(Relation {
                    table: schema,
                    columns: map,
                    sent,
                    ids,
                }),
            );
            return Ok(());
        }
        let client = self.query.client().await?;
        let attributes = schema::attributes(&client, &tname).await?;
        let current = schema::find(&client, &tname).await?;
        drop(client);
        let mut names: HashMap<String, i64> = schema
            .columns
            .iter()
            .filter_map(|c| c.source_id.map(|id| (c.name.clone(), id)))
            .collect();
        if let Some(p) = &previous {
            for ((n, _, _), id) in p.sent.iter().zip(&p.ids) {
                if let Some(id) = id {
                    names.insert(n.clone(), *id);
                }
            }
        }
        let ids = super::shape::resolve(columns, &names, &attributes);
        // The catalog's shape, keeping what discovery attached to the table.
        let (table, types) = match current {
            Some(current) => {
                let mut next = (*schema).clone();
                next.columns = current.schema.columns;
                for c in next.columns.iter_mut() {
                    // An added column is nullable on the target: its rows
                    // have no value until they are filled.
                    if !schema
                        .columns
                        .iter()
                        .any(|k| k.source_id.is_some() && k.source_id == c.source_id)
                    {
                        c.data_type.nullable = true;
                    }
                }
                next.primary_key = current.schema.primary_key;
                next.unique_keys = current.schema.unique_keys;
                if next.columns == schema.columns && next.primary_key == schema.primary_key {
                    (schema, types)
                } else {
                    tracing::info!(table = %tname, "the source table's shape changed");
                    let next = Arc::new(next);
                    self.known
                        .insert(tname.clone(), (next.clone(), current.types.clone()));
                    self.reshape_batch(&next, out);
                    out.push(Change::new(next.clone(), Op::Schema(next.clone())));
                    (next, current.types)
                }
            }
            // Dropped since: its changes map onto the shape known.
            None => (schema, types),
        };
        let map = columns
            .iter()
            .zip(&ids)
            .map(|(c, id)| {
                let i = table
                    .columns
                    .iter()
                    .position(|k| id.is_some() && k.source_id == *id)?;
                let ty = (types[i].oid == c.type_oid).then(|| types[i].clone());
                Some((i, ty))
            })
            .collect();
        self.relations.insert(
            oid,
            Some(Relation {
                table,
                columns: map,
                sent,
                ids,
            }),
        );
        Ok(())
    }

    /// Rows of the batch being read that have an older shape of a table are
    /// given its new shape; the values they lack are read from the source with
    /// the others ([`PostgresChangeStream::fill`]).
    fn reshape_batch(&mut self, new: &Arc<TableSchema>, out: &mut [Change]) {
        for (index, change) in out.iter_mut().enumerate() {
            if change.table.name != new.name || Arc::ptr_eq(&change.table, new) {
                continue;
            }
            let from = change.table.clone();
            let moved = |missing: &[usize]| -> Vec<usize> {
                missing
                    .iter()
                    .filter_map(|&m| new.same_column(&from, m))
                    .collect()
            };
            let (op, added) = match std::mem::replace(&mut change.op, Op::Truncate) {
                Op::Insert(r) => {
                    let (r, added) = super::shape::reshape_row(&from, new, &r);
                    (Op::Insert(r), added)
                }
                Op::Update { before, after } => {
                    let (after, added) = super::shape::reshape_row(&from, new, &after);
                    let before = before.map(|b| super::shape::reshape_row(&from, new, &b).0);
                    (Op::Update { before, after }, added)
                }
                // Only its key is used.
                Op::Delete(r) => (
                    Op::Delete(super::shape::reshape_row(&from, new, &r).0),
                    vec![],
                ),
                op => (op, vec![]),
            };
            change.op = op;
            change.table = new.clone();
            match self.todo.iter_mut().find(|(i, _)| *i == index) {
                Some((_, missing)) => {
                    let mut m = moved(missing);
                    m.extend(added);
                    m.sort_unstable();
                    m.dedup();
                    *missing = m;
                }
                None if !added.is_empty() => self.todo.push((index, added)),
                None => {}
            }
        }
    }
}

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
