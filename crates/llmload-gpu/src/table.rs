//! The one-shot table of `llmload gpu` (a compact nvidia-smi).

use crate::model::GpuReading;

fn gib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1u64 << 30) as f64)
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// Renders the readings as an aligned text table, one GPU per line.
pub fn render_table(gpus: &[GpuReading]) -> String {
    let header = [
        "GPU",
        "NAME",
        "UTIL",
        "MEMORY USED/TOTAL",
        "POWER",
        "TEMP",
        "SM CLOCK",
        "ENERGY",
        "UUID",
    ];
    let rows: Vec<[String; 9]> = gpus
        .iter()
        .map(|r| {
            let mem = match (r.mem_used_bytes, r.mem_total_bytes) {
                (Some(u), Some(t)) => {
                    let pct = if t > 0 {
                        format!(" ({:.0} %)", 100.0 * u as f64 / t as f64)
                    } else {
                        String::new()
                    };
                    format!("{} / {} GiB{pct}", gib(u), gib(t))
                }
                (Some(u), None) => format!("{} GiB / -", gib(u)),
                _ => "-".into(),
            };
            [
                r.index.to_string(),
                if r.name.is_empty() {
                    "-".into()
                } else {
                    r.name.clone()
                },
                or_dash(r.util_pct.map(|u| format!("{u:.0} %"))),
                mem,
                or_dash(r.power_w.map(|p| format!("{p:.1} W"))),
                or_dash(r.temp_c.map(|t| format!("{t:.0} C"))),
                or_dash(r.sm_clock_mhz.map(|c| format!("{c:.0} MHz"))),
                or_dash(r.energy_j.map(|e| format!("{:.1} kJ", e / 1000.0))),
                if r.uuid.is_empty() {
                    "-".into()
                } else {
                    r.uuid.clone()
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_units_and_dashes_for_missing() {
        let r = GpuReading {
            index: 0,
            uuid: "GPU-1".into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            util_pct: Some(100.0),
            mem_used_bytes: Some(1 << 30),
            mem_total_bytes: Some(80 << 30),
            power_w: Some(698.14),
            energy_j: None,
            temp_c: Some(54.0),
            sm_clock_mhz: Some(1335.0),
        };
        let t = render_table(&[r]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("GPU  NAME"));
        assert!(lines[1].contains("100 %"));
        assert!(lines[1].contains("1.0 / 80.0 GiB (1 %)"));
        assert!(lines[1].contains("698.1 W"));
        assert!(lines[1].contains("54 C"));
        assert!(lines[1].contains("1335 MHz"));
        assert!(lines[1].contains(" -  "));
        // Columns align: UUID starts at the same offset on both lines.
        assert_eq!(lines[0].find("UUID"), lines[1].find("GPU-1"));
    }
}
