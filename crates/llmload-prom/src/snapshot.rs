//! Owned, compact scrape values: a shared table of series keys and one `f64` per series.
//!
//! A scrape of vLLM holds ~600-1,000 series whose set barely changes during a run; the keys
//! are stored once in a [`KeyTable`] (shared through an `Arc`, copied only when a new series
//! appears) and each [`Snapshot`] holds only its values.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::histogram::{Histogram, counter_delta};
use crate::parse::{Exposition, MetricType, Suffix};

/// One series: its canonical sample name, family and labels (sorted by name).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesKey {
    pub name: String,
    pub family: String,
    pub kind: MetricType,
    pub suffix: Suffix,
    pub labels: Vec<(String, String)>,
}

impl SeriesKey {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the series accumulates (counter, histogram or summary `_count`/`_sum`/buckets),
    /// so that a window takes its increase rather than its last value.
    pub fn is_cumulative(&self) -> bool {
        match self.kind {
            MetricType::Counter => self.suffix != Suffix::Created,
            MetricType::Histogram | MetricType::Summary => {
                matches!(self.suffix, Suffix::Bucket | Suffix::Count | Suffix::Sum)
            }
            MetricType::Untyped => self.name.ends_with("_total"),
            _ => false,
        }
    }

    /// The identity of the histogram or summary this series belongs to: family and labels
    /// without `le` / `quantile`.
    fn group_key(&self) -> String {
        let mut s = self.family.clone();
        for (k, v) in &self.labels {
            if k != "le" && k != "quantile" {
                s.push('\u{1}');
                s.push_str(k);
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }
}

/// The series keys seen so far, with an index by their text form.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    keys: Vec<SeriesKey>,
    index: HashMap<String, u32>,
}

impl KeyTable {
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn keys(&self) -> &[SeriesKey] {
        &self.keys
    }
    fn lookup(&self, text: &str) -> Option<u32> {
        self.index.get(text).copied()
    }
}

/// Writes `name{a="1",b="2"}` with labels sorted into `buf` (the index key).
fn key_text(name: &str, labels: &mut [(&str, &str)], buf: &mut String) {
    labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    buf.clear();
    buf.push_str(name);
    buf.push('{');
    for (k, v) in labels.iter() {
        buf.push_str(k);
        buf.push_str("=\"");
        crate::parse::escape_label_value(v, buf);
        buf.push_str("\",");
    }
    buf.push('}');
}

/// Which samples a scraper keeps. `_created` timestamps and Python GC internals are dropped by
/// the default filter; everything else is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepFilter {
    pub keep_created: bool,
    pub keep_python_gc: bool,
}

impl KeepFilter {
    /// Keep everything.
    pub const ALL: KeepFilter = KeepFilter {
        keep_created: true,
        keep_python_gc: true,
    };
}

/// Turns expositions into snapshots that share one growing key table.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    table: Arc<KeyTable>,
    filter: KeepFilter,
    buf: String,
    scratch: Vec<(u32, f64)>,
}

impl Interner {
    pub fn new(filter: KeepFilter) -> Self {
        Interner {
            filter,
            ..Default::default()
        }
    }

    pub fn table(&self) -> &Arc<KeyTable> {
        &self.table
    }

    /// Records the values of `expo` against the shared key table.
    pub fn ingest(&mut self, expo: &Exposition<'_>) -> Snapshot {
        self.scratch.clear();
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(16);
        for s in &expo.samples {
            if !self.filter.keep_created && s.suffix == Suffix::Created {
                continue;
            }
            let fam = expo.family_of(s);
            if !self.filter.keep_created
                && fam.kind == MetricType::Gauge
                && fam.name.ends_with("_created")
            {
                // 0.0.4 encoders write `_created` as gauge families of their own.
                continue;
            }
            if !self.filter.keep_python_gc && fam.name.starts_with("python_gc_") {
                continue;
            }
            let name = expo.canonical_name(s);
            labels.clear();
            labels.extend(expo.labels_of(s).iter().map(|l| (l.name, l.value.as_ref())));
            key_text(&name, &mut labels, &mut self.buf);
            let id = match self.table.lookup(&self.buf) {
                Some(id) => id,
                None => {
                    let table = Arc::make_mut(&mut self.table);
                    let id = table.keys.len() as u32;
                    table.keys.push(SeriesKey {
                        name: name.into_owned(),
                        family: fam.name.to_string(),
                        kind: fam.kind,
                        suffix: s.suffix,
                        labels: labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    });
                    table.index.insert(self.buf.clone(), id);
                    id
                }
            };
            self.scratch.push((id, s.value));
        }
        let mut values = vec![f64::NAN; self.table.keys.len()];
        for &(id, v) in &self.scratch {
            values[id as usize] = v;
        }
        Snapshot {
            table: Arc::clone(&self.table),
            values,
        }
    }
}

/// The values of one scrape (or of a delta between two). NaN marks a series absent from it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    table: Arc<KeyTable>,
    values: Vec<f64>,
}

impl Snapshot {
    /// A snapshot of a whole exposition, keeping every sample.
    pub fn from_exposition(expo: &Exposition<'_>) -> Snapshot {
        Interner::new(KeepFilter::ALL).ingest(expo)
    }

    /// Series present in this snapshot with their values.
    pub fn iter(&self) -> impl Iterator<Item = (&SeriesKey, f64)> {
        self.table
            .keys
            .iter()
            .zip(self.values.iter())
            .filter(|(_, v)| !v.is_nan())
            .map(|(k, &v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.values.iter().filter(|v| !v.is_nan()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by this snapshot's values (the key table is shared).
    pub fn value_bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<f64>()
    }

    /// Whether any series has the sample name `name`.
    pub fn has(&self, name: &str) -> bool {
        self.iter().any(|(k, _)| k.name == name)
    }

    /// Series with sample name `name`.
    pub fn series<'s>(&'s self, name: &'s str) -> impl Iterator<Item = (&'s SeriesKey, f64)> {
        self.iter().filter(move |(k, _)| k.name == name)
    }

    /// Sum of every series named `name` that passes `filter`; `None` when there is none.
    pub fn sum_where(&self, name: &str, filter: impl Fn(&SeriesKey) -> bool) -> Option<f64> {
        let mut total = None;
        for (k, v) in self.series(name) {
            if filter(k) {
                *total.get_or_insert(0.0) += v;
            }
        }
        total
    }

    /// Sum of every series named `name`; `None` when there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.sum_where(name, |_| true)
    }

    /// Sums of the series named `name` grouped by the value of `label` (missing label: "").
    pub fn sum_by(
        &self,
        name: &str,
        label: &str,
        filter: impl Fn(&SeriesKey) -> bool,
    ) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, v) in self.series(name) {
            if filter(k) {
                *out.entry(k.label(label).unwrap_or("").to_string())
                    .or_insert(0.0) += v;
            }
        }
        out
    }

    /// The histogram `base` (`base_bucket`, `base_sum`, `base_count`) summed over every series
    /// passing `filter`; `None` when the exposition has no `base_count` or bucket.
    pub fn histogram_where(
        &self,
        base: &str,
        filter: impl Fn(&SeriesKey) -> bool,
    ) -> Option<Histogram> {
        let bucket = format!("{base}_bucket");
        let sum_n = format!("{base}_sum");
        let count_n = format!("{base}_count");
        let mut pairs = Vec::new();
        let (mut sum, mut count, mut found) = (0.0, 0.0, false);
        for (k, v) in self.iter() {
            if !filter(k) {
                continue;
            }
            if k.name == bucket {
                if let Some(le) = k.label("le").and_then(parse_le) {
                    pairs.push((le, v));
                    found = true;
                }
            } else if k.name == sum_n {
                sum += v;
                found = true;
            } else if k.name == count_n {
                count += v;
                found = true;
            }
        }
        found.then(|| Histogram::from_buckets(pairs, sum, count))
    }

    pub fn histogram(&self, base: &str) -> Option<Histogram> {
        self.histogram_where(base, |_| true)
    }

    /// Values of `label` present on series named `name` (sorted, distinct).
    pub fn label_values(&self, name_prefix: &str, label: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .iter()
            .filter(|(k, _)| k.name.starts_with(name_prefix))
            .filter_map(|(k, _)| k.label(label).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The increase from `before` to `self` for cumulative series (counter resets handled per
    /// counter, and per histogram/summary as a whole), the value of `self` for the others.
    /// Series are matched by name and labels, so the two snapshots may come from different
    /// key tables (two files).
    pub fn delta_since(&self, before: &Snapshot) -> Snapshot {
        let same_table = Arc::ptr_eq(&self.table, &before.table)
            || before.table.keys.len() <= self.table.keys.len()
                && before
                    .table
                    .keys
                    .iter()
                    .zip(&self.table.keys)
                    .all(|(a, b)| a == b);
        let mut buf = String::new();
        let mut before_value = |i: usize, k: &SeriesKey| -> f64 {
            if same_table {
                return before.values.get(i).copied().unwrap_or(f64::NAN);
            }
            let mut labels: Vec<(&str, &str)> = k
                .labels
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            key_text(&k.name, &mut labels, &mut buf);
            before
                .table
                .lookup(&buf)
                .and_then(|j| before.values.get(j as usize).copied())
                .unwrap_or(f64::NAN)
        };
        let keys = &self.table.keys;
        let prev: Vec<f64> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                if k.is_cumulative() {
                    before_value(i, k)
                } else {
                    f64::NAN
                }
            })
            .collect();
        // Groups (histograms, summaries) in which some cumulative series went down: reset.
        let mut reset_groups: HashMap<String, bool> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if matches!(k.kind, MetricType::Histogram | MetricType::Summary) && k.is_cumulative() {
                let a = self.values[i];
                let b = prev[i];
                let went_down = !a.is_nan() && !b.is_nan() && a < b && k.suffix != Suffix::Sum;
                let e = reset_groups.entry(k.group_key()).or_insert(false);
                *e |= went_down;
            }
        }
        let values = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let a = self.values[i];
                if a.is_nan() || !k.is_cumulative() {
                    return a;
                }
                let b = prev[i];
                if b.is_nan() {
                    return a; // new series: started from zero
                }
                if matches!(k.kind, MetricType::Histogram | MetricType::Summary) {
                    if reset_groups.get(&k.group_key()).copied().unwrap_or(false) {
                        return a;
                    }
                    return a - b;
                }
                counter_delta(b, a)
            })
            .collect();
        Snapshot {
            table: Arc::clone(&self.table),
            values,
        }
    }

    /// Merges snapshots of several targets into one, adding `label="<name>"` to every series so
    /// that they stay apart; sums over that label give the totals.
    pub fn merge_labeled(parts: &[(String, &Snapshot)], label: &str) -> Snapshot {
        let mut table = KeyTable::default();
        let mut values = Vec::new();
        let mut buf = String::new();
        for (tag, snap) in parts {
            for (k, v) in snap.iter() {
                let mut key = k.clone();
                key.labels.push((label.to_string(), tag.clone()));
                key.labels.sort();
                let mut labels: Vec<(&str, &str)> = key
                    .labels
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                key_text(&key.name, &mut labels, &mut buf);
                if let Some(&id) = table.index.get(&buf) {
                    values[id as usize] = v;
                } else {
                    table.index.insert(buf.clone(), table.keys.len() as u32);
                    table.keys.push(key);
                    values.push(v);
                }
            }
        }
        Snapshot {
            table: Arc::new(table),
            values,
        }
    }
}

/// Parses an `le` bound written as `"1.0"`, `"1"`, `"+Inf"`, `"1e-3"`.
pub fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    const A: &str = "# TYPE c_total counter\nc_total{e=\"0\"} 10\nc_total{e=\"1\"} 5\n\
# TYPE g gauge\ng 3\n\
# TYPE h histogram\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"+Inf\"} 4\nh_sum 5\nh_count 4\n";
    const B: &str = "# TYPE c_total counter\nc_total{e=\"1\"} 7\nc_total{e=\"0\"} 4\n\
# TYPE g gauge\ng 9\n\
# TYPE h histogram\nh_bucket{le=\"1.0\"} 5\nh_bucket{le=\"+Inf\"} 9\nh_sum 12\nh_count 9\n\
# TYPE n_total counter\nn_total 3\n";

    #[test]
    fn delta_between_files_with_reset() {
        let a = Snapshot::from_exposition(&parse(A).expect("valid"));
        let b = Snapshot::from_exposition(&parse(B).expect("valid"));
        let d = b.delta_since(&a);
        // e=0 went from 10 to 4: reset, increase is 4; e=1: 7 - 5.
        assert_eq!(d.sum_by("c_total", "e", |_| true).get("0"), Some(&4.0));
        assert_eq!(
            d.sum_by("c_total", "e", |_| true).get("1"),
            Some(&(7.0 - 5.0))
        );
        assert_eq!(d.sum("g"), Some(9.0));
        assert_eq!(d.sum("n_total"), Some(3.0));
        let h = d.histogram("h").expect("present");
        assert_eq!(
            h.buckets,
            vec![(1.0, 5.0 - 2.0), (f64::INFINITY, 9.0 - 4.0)]
        );
        assert_eq!((h.sum, h.count), (12.0 - 5.0, 9.0 - 4.0));
    }

    #[test]
    fn interner_shares_keys_and_marks_absent() {
        let mut it = Interner::new(KeepFilter::default());
        let a = it.ingest(&parse(A).expect("valid"));
        let b = it.ingest(&parse(B).expect("valid"));
        assert!(a.sum("n_total").is_none());
        assert_eq!(b.sum("n_total"), Some(3.0));
        let d = b.delta_since(&a);
        assert_eq!(d.sum("c_total"), Some(4.0 + 2.0));
    }
}
