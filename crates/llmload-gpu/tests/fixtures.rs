//! Readers on real exporter outputs (tests/data, copied from the shared fixtures).

use llmload_gpu::window::{Track, summarize};
use llmload_gpu::{ExporterFormat, GpuReading, parse_nvidia_smi_csv, read_exposition_text};

fn data(name: &str) -> String {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

const H100: &str = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01";

#[test]
fn nvidia_gpu_exporter_load_converts_ratios_and_hertz() {
    let (fmt, gpus) = read_exposition_text(&data(&format!("{H100}__load.metrics"))).unwrap();
    assert_eq!(fmt, ExporterFormat::NvidiaGpuExporter);
    // Per-process series (compute_app_*) do not make extra GPUs.
    assert_eq!(gpus.len(), 1);
    let g = &gpus[0];
    assert_eq!(g.index, 0);
    assert_eq!(g.uuid, "00000000-0000-0000-0000-000000000000");
    assert_eq!(g.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(g.util_pct, Some(100.0)); // ratio 1 -> 100 %
    assert_eq!(g.mem_used_bytes, Some(20_780_679_168));
    assert_eq!(g.mem_total_bytes, Some(85_520_809_984));
    assert_eq!(g.power_w, Some(631.95));
    assert_eq!(g.temp_c, Some(59.0));
    assert_eq!(g.sm_clock_mhz, Some(1980.0)); // 1.98e+09 Hz
    assert_eq!(g.energy_j, None); // this exporter has no energy counter
}

#[test]
fn nvidia_gpu_exporter_idle() {
    let (_, gpus) = read_exposition_text(&data(&format!("{H100}__idle.metrics"))).unwrap();
    assert_eq!(gpus.len(), 1);
    let g = &gpus[0];
    assert_eq!(g.util_pct, Some(0.0));
    assert_eq!(g.mem_used_bytes, Some(0));
    assert_eq!(g.power_w, Some(69.85));
    assert_eq!(g.temp_c, Some(41.0));
    assert_eq!(g.sm_clock_mhz, Some(345.0));
}

#[test]
fn dcgm_samples_with_comma_space_elisions_and_sentinels() {
    for f in [
        "dcgm-exporter-README-docker-sample.prom",
        "dcgm-exporter-README-k8s-sample.prom",
    ] {
        let (fmt, gpus) = read_exposition_text(&data(f)).unwrap();
        assert_eq!(fmt, ExporterFormat::Dcgm, "{f}");
        assert_eq!(
            gpus,
            vec![GpuReading {
                index: 0,
                uuid: "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52".into(),
                sm_clock_mhz: Some(139.0),
                ..Default::default()
            }],
            "{f}"
        );
    }
}

#[test]
fn dcgm_full_set_of_fields_and_two_gpus() {
    let text = "\
DCGM_FI_DEV_GPU_UTIL{gpu=\"1\", UUID=\"GPU-b\", device=\"nvidia1\", modelName=\"NVIDIA H100 80GB HBM3\", Hostname=\"h\"} 87
DCGM_FI_DEV_GPU_UTIL{gpu=\"0\", UUID=\"GPU-a\", device=\"nvidia0\", modelName=\"NVIDIA H100 80GB HBM3\", Hostname=\"h\"} 100
DCGM_FI_DEV_FB_USED{gpu=\"0\", UUID=\"GPU-a\"} 1011
DCGM_FI_DEV_FB_FREE{gpu=\"0\", UUID=\"GPU-a\"} 80040
DCGM_FI_DEV_FB_RESERVED{gpu=\"0\", UUID=\"GPU-a\"} 508
DCGM_FI_DEV_POWER_USAGE{gpu=\"0\", UUID=\"GPU-a\"} 698.14
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\", UUID=\"GPU-a\"} 4186150
DCGM_FI_DEV_GPU_TEMP{gpu=\"0\", UUID=\"GPU-a\"} 54
DCGM_FI_DEV_SM_CLOCK{gpu=\"0\", UUID=\"GPU-a\"} 1335
DCGM_FI_DEV_POWER_USAGE{gpu=\"1\", UUID=\"GPU-b\"} 9223372036854775794
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"1\", UUID=\"GPU-b\"} 9223372036854775794
DCGM_FI_DEV_GPU_TEMP{gpu=\"1\", UUID=\"GPU-b\"} 2147483632
";
    let (_, gpus) = read_exposition_text(text).unwrap();
    assert_eq!(gpus.len(), 2);
    let a = &gpus[0];
    assert_eq!((a.index, a.uuid.as_str()), (0, "GPU-a"));
    assert_eq!(a.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(a.util_pct, Some(100.0));
    assert_eq!(a.mem_used_bytes, Some(1011 << 20));
    assert_eq!(a.mem_total_bytes, Some(81559 << 20)); // used + free + reserved MiB
    assert_eq!(a.power_w, Some(698.14));
    assert_eq!(a.energy_j, Some(4186.15)); // mJ -> J
    assert_eq!(a.temp_c, Some(54.0));
    assert_eq!(a.sm_clock_mhz, Some(1335.0));
    let b = &gpus[1];
    assert_eq!(b.util_pct, Some(87.0));
    assert_eq!((b.power_w, b.energy_j, b.temp_c), (None, None, None));
}

#[test]
fn nvidia_smi_csv_busy_and_idle() {
    let busy = parse_nvidia_smi_csv(&data("nvidia-smi-query-h100-busy.csv")).unwrap();
    assert_eq!(busy.len(), 1);
    let g = &busy[0];
    assert_eq!(g.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(g.uuid, "GPU-94c2f627-e521-b94c-0282-0a26fd76ac1e");
    assert_eq!(g.util_pct, Some(100.0));
    assert_eq!(g.mem_used_bytes, Some(1011 << 20));
    assert_eq!(g.mem_total_bytes, Some(81559 << 20));
    assert_eq!(g.power_w, Some(698.14));
    assert_eq!(g.temp_c, Some(54.0));
    assert_eq!(g.sm_clock_mhz, Some(1335.0));
    let idle = parse_nvidia_smi_csv(&data("nvidia-smi-query-h100-idle.csv")).unwrap();
    assert_eq!(idle[0].util_pct, Some(0.0));
    assert_eq!(idle[0].power_w, Some(70.22));
    assert_eq!(idle[0].sm_clock_mhz, Some(345.0));
    assert!(parse_nvidia_smi_csv("").is_err());
    assert!(parse_nvidia_smi_csv("index, name\n0\n").is_err());
}

/// The NVML capture (pynvml on an H100): a window over the busy phase. The energy counter
/// (mJ -> J) and the integral of power (mW -> W) must tell the same story.
#[test]
fn nvml_capture_counter_and_power_integral_agree() {
    let v: serde_json::Value = serde_json::from_str(&data("nvml-h100-idle-and-busy.json")).unwrap();
    let mut track = Track::default();
    let mut no_counter = Track::default();
    let t0 = v["idle"][0]["t"].as_f64().unwrap();
    for phase in ["idle", "busy"] {
        for s in v[phase].as_array().unwrap() {
            let f = |k: &str| s[k].as_f64().unwrap();
            let r = GpuReading {
                index: 0,
                uuid: v["info"]["uuid"].as_str().unwrap().into(),
                name: v["info"]["name"].as_str().unwrap().into(),
                util_pct: Some(f("util_gpu_pct")),
                mem_used_bytes: Some(f("mem_used_bytes") as u64),
                mem_total_bytes: Some(f("mem_total_bytes") as u64),
                power_w: Some(f("power_mw") / 1000.0),
                energy_j: Some(f("energy_mj") / 1000.0),
                temp_c: Some(f("temp_c")),
                sm_clock_mhz: Some(f("sm_clock_mhz")),
            };
            track.push(f("t") - t0, &r);
            no_counter.push(
                f("t") - t0,
                &GpuReading {
                    energy_j: None,
                    ..r
                },
            );
        }
    }
    let busy = v["busy"].as_array().unwrap();
    let (a, b) = (
        busy[0]["t"].as_f64().unwrap() - t0,
        busy[busy.len() - 1]["t"].as_f64().unwrap() - t0,
    );
    let (s, series) = summarize(&track, a, b);
    assert_eq!(s.samples, 30);
    assert_eq!(series.t_s.len(), 30);
    assert_eq!(s.energy_source, Some("counter"));
    // 4186150 .. last counter: exactly the counter delta.
    let e0 = busy[0]["energy_mj"].as_f64().unwrap();
    let e1 = busy[busy.len() - 1]["energy_mj"].as_f64().unwrap();
    assert!((s.energy_j.unwrap() - (e1 - e0) / 1000.0).abs() < 1e-6);
    let (s2, _) = summarize(&no_counter, a, b);
    assert_eq!(s2.energy_source, Some("power_integral"));
    let rel = (s2.energy_j.unwrap() - s.energy_j.unwrap()).abs() / s.energy_j.unwrap();
    assert!(
        rel < 0.03,
        "counter {} J vs power integral {} J",
        s.energy_j.unwrap(),
        s2.energy_j.unwrap()
    );
    let p = s.power_mean_w.unwrap();
    assert!((650.0..720.0).contains(&p), "{p}");
    assert!(s.util_mean_pct.unwrap() > 95.0);
    assert_eq!(s.mem_used_peak_bytes, Some(1_563_230_208));
    assert!(s.temp_max_c.unwrap() >= 50.0);
}
