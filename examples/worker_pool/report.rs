//! The results: Markdown tables, or one JSON object (`--json`).

use std::mem::size_of;

use hdrhistogram::Histogram;
use homeslab::Stats;

use crate::args::Config;
use crate::supervisor::Report;
use crate::{
    HEADER, LARGE_EVERY, POOLS, REQUEST, RESPONSE, RESPONSE_CAPACITY, RESPONSE_KEEP_CAP, SAMPLE,
    SESSION,
};

fn pct(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

fn bytes(b: u64) -> String {
    if b >= 10 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0} KiB", b as f64 / 1024.0)
    }
}

/// Prints a Markdown table, the first `left` columns left-aligned.
fn print_table(head: &[&str], rows: &[Vec<String>], left: usize) {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        println!("| {} |", s.join(" | "));
    };
    line(&head.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    println!(
        "|{}|",
        widths
            .iter()
            .enumerate()
            .map(|(i, w)| if i < left {
                format!(":{}", "-".repeat(w + 1))
            } else {
                format!("{}:", "-".repeat(w + 1))
            })
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        line(r);
    }
}

pub fn table(cfg: &Config, reports: &[Report]) {
    let acceptors = (cfg.threads / 3).max(1);
    let [req, resp, sess, heads] = [REQUEST, RESPONSE, SESSION, HEADER].map(|i| cfg.size_label(i));
    println!(
        "worker_pool: {} threads ({} acceptor{}, {} worker{} that come and go), \
         {req} requests with {heads} headers, {sess} sessions, responses of {resp} in \
         {RESPONSE_CAPACITY} B buffers, {:.1} s per allocator\n",
        cfg.threads,
        acceptors,
        if acceptors == 1 { "" } else { "s" },
        cfg.threads - acceptors,
        if cfg.threads - acceptors == 1 {
            ""
        } else {
            "s"
        },
        cfg.seconds
    );
    let head = [
        "allocator",
        "requests/s",
        "allocs/s",
        "alloc p50",
        "alloc p99",
        "free p50",
        "free p99",
        "peak mapped",
        "peak RSS Δ",
        "remote frees",
        "overflow allocs",
        "respawns",
        "mismatches",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let secs = r.wall.as_secs_f64();
            let m = &r.meter;
            let alloc_ns = m.merged(|p| &p.alloc_ns);
            let free_ns = m.merged(|p| &p.free_ns);
            vec![
                r.allocator.to_string(),
                format!("{:.2} M", m.requests as f64 / secs / 1e6),
                format!("{:.2} M", m.total(|p| p.allocs) as f64 / secs / 1e6),
                format!("{} ns", pct(&alloc_ns, 0.5)),
                format!("{} ns", pct(&alloc_ns, 0.99)),
                format!("{} ns", pct(&free_ns, 0.5)),
                format!("{} ns", pct(&free_ns, 0.99)),
                r.total(|s| s.peak_mapped_bytes).map_or("–".into(), bytes),
                bytes(r.peak_rss_delta),
                match r.total(|s| s.remote_frees) {
                    Some(n) => n.to_string(),
                    None => format!("({})", m.total(|p| p.cross_frees)),
                },
                r.total(|s| s.overflow_allocs)
                    .map_or("–".into(), |n| n.to_string()),
                r.respawns.to_string(),
                m.mismatches.to_string(),
            ]
        })
        .collect();
    print_table(&head, &rows, 1);

    println!();
    let head = [
        "pool",
        "allocator",
        "via",
        "size",
        "allocs",
        "remote frees",
        "peak live",
        "live at end",
        "peak mapped",
        "mapped at end",
        "overflow allocs",
        "alloc p50",
        "free p50",
    ];
    let mut rows = Vec::new();
    for (i, pool) in POOLS.iter().enumerate() {
        for r in reports {
            let m = &r.meter.pools[i];
            let st = r.stats[i];
            let or_dash = |f: fn(&Stats) -> String| st.as_ref().map_or("–".into(), f);
            rows.push(vec![
                pool.to_string(),
                r.allocator.to_string(),
                r.via[i].to_string(),
                cfg.size_label(i),
                st.map_or(m.allocs, |s| s.allocs).to_string(),
                st.map_or(format!("({})", m.cross_frees), |s| {
                    s.remote_frees.to_string()
                }),
                st.map_or("–".into(), |_| r.peak_live[i].to_string()),
                st.map_or(format!("({})", m.allocs.saturating_sub(m.frees)), |s| {
                    s.live_blocks.to_string()
                }),
                or_dash(|s| bytes(s.peak_mapped_bytes)),
                or_dash(|s| bytes(s.mapped_bytes)),
                or_dash(|s| s.overflow_allocs.to_string()),
                format!("{} ns", pct(&m.alloc_ns, 0.5)),
                format!("{} ns", pct(&m.free_ns, 0.5)),
            ]);
        }
    }
    print_table(&head, &rows, 3);

    println!();
    let head = [
        "pool",
        "allocator",
        "via",
        "gets",
        "constructed",
        "reused",
        "destroyed",
        "of which keep_if",
        "cached at end",
        "cached buffers",
        "reused %",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let m = &r.meter.pools[RESPONSE];
            let gets = m.allocs;
            let share = |n: u64| format!("{:.1}%", 100.0 * n as f64 / gets.max(1) as f64);
            let mut row = vec![
                POOLS[RESPONSE].to_string(),
                r.allocator.to_string(),
                r.via[RESPONSE].to_string(),
                gets.to_string(),
            ];
            row.extend(match r.stats[RESPONSE] {
                Some(s) => [
                    s.objects_constructed.to_string(),
                    s.objects_reused.to_string(),
                    s.objects_destroyed.to_string(),
                    format!("({})", r.meter.grown),
                    s.objects_cached.to_string(),
                    bytes(s.objects_cached * RESPONSE_CAPACITY as u64),
                    share(s.objects_reused),
                ],
                // Without an object pool every get constructs a buffer and
                // every release destroys it.
                None => [
                    format!("({gets})"),
                    "(0)".into(),
                    format!("({})", m.frees),
                    "–".into(),
                    "(0)".into(),
                    "–".into(),
                    share(0),
                ],
            });
            row
        })
        .collect();
    print_table(&head, &rows, 3);
    println!(
        "\nlatencies: 1 op in {SAMPLE} on average timed with Instant (clock read included); \
         peak mapped (first table): the sum of the pools' peaks; remote frees: homeslab's \
         Stats::remote_frees, (in parentheses) frees the example made of blocks another thread \
         allocated; live at end (in parentheses): the example's allocs minus its frees.\n\
         response: a get and a release of a Vec<u8> buffer of {RESPONSE_CAPACITY} B; the \
         ObjectPool's slots (its mapped bytes) hold the {}-byte Vec headers, the buffers are \
         system-allocator memory in both runs (RSS counts them); keep_if drops a buffer grown \
         past {RESPONSE_KEEP_CAP} B (of which keep_if: the releases of such buffers the \
         example made; the other destructions are of cached buffers in slabs homeslab \
         reclaimed); cached buffers: the bytes of the buffers the pool holds \
         constructed at the end; (in parentheses) the example's counts. headers: one \
         SlabAlloc shared by every thread, its counters summed over its size classes.",
        size_of::<Vec<u8>>()
    );
    for r in reports {
        for (i, (pool, s)) in POOLS.iter().zip(r.stats).enumerate() {
            if let Some(s) = s {
                println!(
                    "{} {pool} ({}): frees {}, double frees {}, foreign frees {}, corruption {}, overflow segments {}, thread heaps {}",
                    r.allocator, r.via[i], s.frees, s.double_frees, s.foreign_frees, s.corruption_events, s.overflow_segments, s.thread_heaps
                );
            }
        }
    }
}

pub fn json(cfg: &Config, reports: &[Report]) {
    let acceptors = (cfg.threads / 3).max(1);
    let hist = |h: &Histogram<u64>| {
        format!(
            "{{\"samples\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}",
            h.len(),
            pct(h, 0.5),
            pct(h, 0.99),
            pct(h, 0.999),
            h.max()
        )
    };
    let opt = |v: Option<u64>| v.map_or("null".to_string(), |x| x.to_string());
    let sizes = cfg.sizes();
    let runs: Vec<String> = reports
        .iter()
        .map(|r| {
            let m = &r.meter;
            let secs = r.wall.as_secs_f64();
            let allocs = m.total(|p| p.allocs);
            let pools: Vec<String> = POOLS
                .iter()
                .enumerate()
                .map(|(i, pool)| {
                    let pm = &m.pools[i];
                    let st = r.stats[i];
                    let (min, max) = sizes[i];
                    let objects = match (i, st) {
                        (RESPONSE, Some(s)) => format!(
                            "{{\"constructed\":{},\"reused\":{},\"destroyed\":{},\"cached\":{},\
                             \"released_grown\":{}}}",
                            s.objects_constructed,
                            s.objects_reused,
                            s.objects_destroyed,
                            s.objects_cached,
                            m.grown
                        ),
                        // A fresh buffer per get, destroyed at its release.
                        (RESPONSE, None) => format!(
                            "{{\"constructed\":{},\"reused\":0,\"destroyed\":{},\"cached\":0,\
                             \"released_grown\":{}}}",
                            pm.allocs, pm.frees, m.grown
                        ),
                        _ => "null".into(),
                    };
                    format!(
                        "{{\"pool\":\"{pool}\",\"via\":\"{}\",\"object_size\":{},\"min_bytes\":{min},\
                         \"max_bytes\":{max},\"allocs\":{},\"frees\":{},\
                         \"cross_thread_frees\":{},\"remote_frees\":{},\"live_blocks_at_end\":{},\
                         \"peak_live_blocks\":{},\"mapped_bytes_at_end\":{},\"peak_mapped_bytes\":{},\
                         \"overflow_allocs\":{},\"objects\":{objects},\"alloc_ns\":{},\"free_ns\":{}}}",
                        r.via[i],
                        if min == max || i == RESPONSE {
                            min.to_string()
                        } else {
                            "null".into()
                        },
                        pm.allocs,
                        pm.frees,
                        pm.cross_frees,
                        opt(st.map(|s| s.remote_frees)),
                        opt(st.map(|s| s.live_blocks)),
                        opt(st.map(|_| r.peak_live[i])),
                        opt(st.map(|s| s.mapped_bytes)),
                        opt(st.map(|s| s.peak_mapped_bytes)),
                        opt(st.map(|s| s.overflow_allocs)),
                        hist(&pm.alloc_ns),
                        hist(&pm.free_ns),
                    )
                })
                .collect();
            format!(
                "{{\"allocator\":\"{}\",\"wall_seconds\":{:.6},\"requests\":{},\"requests_per_second\":{:.1},\
                 \"allocs\":{},\"frees\":{},\"allocs_per_second\":{:.1},\"alloc_ns\":{},\"free_ns\":{},\
                 \"peak_mapped_bytes\":{},\"peak_rss_delta_bytes\":{},\"remote_frees\":{},\
                 \"cross_thread_frees\":{},\"overflow_allocs\":{},\"live_blocks_at_end\":{},\
                 \"worker_respawns\":{},\"stamp_mismatches\":{},\"pools\":[{}]}}",
                r.allocator,
                secs,
                m.requests,
                m.requests as f64 / secs,
                allocs,
                m.total(|p| p.frees),
                allocs as f64 / secs,
                hist(&m.merged(|p| &p.alloc_ns)),
                hist(&m.merged(|p| &p.free_ns)),
                opt(r.total(|s| s.peak_mapped_bytes)),
                r.peak_rss_delta,
                opt(r.total(|s| s.remote_frees)),
                m.total(|p| p.cross_frees),
                opt(r.total(|s| s.overflow_allocs)),
                opt(r.total(|s| s.live_blocks)),
                r.respawns,
                m.mismatches,
                pools.join(",")
            )
        })
        .collect();
    println!(
        "{{\"threads\":{},\"acceptors\":{},\"workers\":{},\"object_size\":{},\
         \"object_sizes\":{{\"request\":{},\"response\":{},\"session\":{},\
         \"headers\":{{\"min\":{},\"max\":{}}}}},\"large_response\":{{\"bytes\":{},\"one_in\":{}}},\
         \"response_buffer_capacity\":{RESPONSE_CAPACITY},\"response_keep_capacity\":{RESPONSE_KEEP_CAP},\
         \"seconds\":{},\"sample_one_in\":{},\"runs\":[{}]}}",
        cfg.threads,
        acceptors,
        cfg.threads - acceptors,
        cfg.object_size,
        sizes[REQUEST].0,
        sizes[RESPONSE].0,
        sizes[SESSION].0,
        sizes[HEADER].0,
        sizes[HEADER].1,
        sizes[RESPONSE].1,
        LARGE_EVERY,
        cfg.seconds,
        SAMPLE,
        runs.join(",")
    );
}
