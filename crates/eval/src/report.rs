//! A/B outputs: the Markdown table (stdout) and `report.html`, one self-contained file (no
//! network): the table, one SVG chart per metric and comparison (the mean paired
//! difference with its 95% interval against zero, and each arm's mean), and the samples of
//! each prompt side by side by arm.

use crate::ab::{AbResults, Better, METRICS};
use std::fmt::Write as _;

fn fmt(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

fn better_str(b: Better) -> &'static str {
    match b {
        Better::Lower => "lower",
        Better::Higher => "higher",
        Better::Neither => "-",
    }
}

fn arm_names(r: &AbResults) -> Vec<String> {
    let mut names: Vec<String> = r.arms.iter().map(|a| a.name.clone()).collect();
    if r.aggregates.contains_key("reference") {
        names.push("reference".into());
    }
    names
}

/// What the independent judge was and what was left out: a line each.
fn judge_lines(r: &AbResults) -> Vec<String> {
    let mut out = vec![format!("fluency judge (fluency_ppl): {}", r.fluency_judge)];
    if let Some(d) = &r.judge_encoder {
        let cost = r.judge_seconds_per_sample.map_or(String::new(), |s| format!(", {:.0} ms per sample", s * 1e3));
        let name = r.judge_encoder_name.as_deref().unwrap_or("sentence encoder");
        out.push(format!("independent judge: {name} ({d}){cost}"));
    }
    if let Some(t) = r.restart_threshold {
        out.push(format!(
            "restart threshold: cosine {t:.3} (the 5% quantile of the references' lowest sentence-to-prior cosine)"
        ));
    }
    out.extend(r.notes.iter().map(|n| format!("note: {n}")));
    out
}

/// The Markdown summary: per metric, each arm's mean and each comparison's paired difference.
pub fn markdown(r: &AbResults) -> String {
    let names = arm_names(r);
    let pairs: Vec<(String, String)> = r.arms[1..].iter().map(|b| (r.arms[0].name.clone(), b.name.clone())).collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "A/B on {} prompts x {} samples, {} sentences each, seed {}; self perplexity from {}; {:.0} s",
        r.prompts.len(),
        r.samples_per_prompt,
        r.sentences,
        r.seed,
        r.judge,
        r.wall_seconds
    );
    for line in judge_lines(r) {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s);
    let mut head = "| metric | better |".to_string();
    let mut rule = "|---|---|".to_string();
    for n in &names {
        let _ = write!(head, " {n} |");
        rule.push_str("---:|");
    }
    for (a, b) in &pairs {
        let _ = write!(head, " {a} - {b} [95% CI] | p | verdict |");
        rule.push_str("---:|---:|---|");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for (metric, better, _, _) in METRICS {
        let vals: Vec<Option<f64>> =
            names.iter().map(|n| r.aggregates.get(n).and_then(|m| m.get(*metric)).copied()).collect();
        if vals.iter().all(Option::is_none) {
            continue;
        }
        let mut row = format!("| {metric} | {} |", better_str(*better));
        for v in &vals {
            let _ = write!(row, " {} |", v.map_or("-".into(), fmt));
        }
        for (a, b) in &pairs {
            match r.comparisons.iter().find(|c| &c.a == a && &c.b == b && c.metric == *metric) {
                Some(c) => {
                    let _ = write!(
                        row,
                        " {} [{}, {}] | {:.3} | {} |",
                        fmt(c.test.diff),
                        fmt(c.test.ci_low),
                        fmt(c.test.ci_high),
                        c.test.p_value,
                        c.verdict
                    );
                }
                None => row.push_str(" - | - | - |"),
            }
        }
        let _ = writeln!(s, "{row}");
    }
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A forest-plot row as SVG: the interval of `a - b` against zero.
fn chart(c: &crate::ab::Comparison, mean_a: Option<f64>, mean_b: Option<f64>) -> String {
    let (w, h, pad) = (520.0, 86.0, 40.0);
    let t = &c.test;
    let span =
        [t.ci_low.abs(), t.ci_high.abs(), t.diff.abs()].into_iter().filter(|x| x.is_finite()).fold(0.0f64, f64::max);
    let span = if span > 0.0 { span * 1.15 } else { 1.0 };
    let x = |v: f64| pad + (v + span) / (2.0 * span) * (w - 2.0 * pad);
    let color = if c.verdict != "no difference" { "#c0392b" } else { "#555" };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" data-metric="{m}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{m}: {a} minus {b}">"#,
        m = esc(&c.metric),
        a = esc(&c.a),
        b = esc(&c.b),
    );
    let _ = write!(s, r#"<text x="4" y="14" font-size="12" font-weight="bold">{}</text>"#, esc(&c.metric));
    let _ = write!(
        s,
        r#"<text x="{}" y="14" font-size="11" text-anchor="end">{}: {} | {}: {}</text>"#,
        w - 4.0,
        esc(&c.a),
        mean_a.map_or("-".into(), fmt),
        esc(&c.b),
        mean_b.map_or("-".into(), fmt)
    );
    let y = 44.0;
    let _ = write!(s, r##"<line x1="{0}" y1="24" x2="{0}" y2="64" stroke="#999" stroke-dasharray="3,3"/>"##, x(0.0));
    let _ = write!(s, r##"<line x1="{pad}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##, w - pad);
    if t.diff.is_finite() {
        let _ = write!(
            s,
            r#"<line class="ci" x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"/>"#,
            x(t.ci_low),
            x(t.ci_high)
        );
        let _ = write!(s, r#"<circle cx="{}" cy="{y}" r="5" fill="{color}"/>"#, x(t.diff));
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="80" font-size="11" text-anchor="middle">{} - {} = {} [{}, {}], p = {:.3}: {}</text>"#,
        w / 2.0,
        esc(&c.a),
        esc(&c.b),
        fmt(t.diff),
        fmt(t.ci_low),
        fmt(t.ci_high),
        t.p_value,
        esc(&c.verdict)
    );
    let _ = write!(s, r#"<text x="{pad}" y="62" font-size="10" text-anchor="middle">{}</text>"#, fmt(-span));
    let _ = write!(s, r#"<text x="{}" y="62" font-size="10" text-anchor="middle">{}</text>"#, w - pad, fmt(span));
    s.push_str("</svg>");
    s
}

/// `report.html`: self-contained, no scripts or resources from the network.
pub fn html(r: &AbResults) -> String {
    let names = arm_names(r);
    let mut s = String::new();
    s.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>plandiff A/B report</title>\n<style>",
    );
    s.push_str(
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}\
         td.num{text-align:right;font-variant-numeric:tabular-nums}.win{font-weight:bold;color:#c0392b}\
         .charts{display:flex;flex-wrap:wrap;gap:8px}.charts svg{border:1px solid #eee;background:#fff}\
         .prompt{margin:1.5em 0;border-top:2px solid #ddd}.cols{display:grid;gap:10px}\
         .sample{white-space:pre-wrap;font-size:13px;background:#f7f7f7;padding:6px;margin:4px 0}\
         .m{color:#666;font-size:11px}",
    );
    s.push_str("</style></head><body>\n");
    let _ = writeln!(
        s,
        "<h1>plandiff A/B</h1><p>Bundle <code>{}</code>; {} prompts &times; {} samples, {} sentences each; seed {}; self perplexity from <code>{}</code>; {:.0} s.</p>",
        esc(&r.bundle),
        r.prompts.len(),
        r.samples_per_prompt,
        r.sentences,
        r.seed,
        esc(&r.judge),
        r.wall_seconds
    );
    for line in judge_lines(r) {
        let _ = writeln!(s, "<p class=\"m\">{}</p>", esc(&line));
    }
    summary_table(&mut s, r, &names);
    // Charts.
    for b in &r.arms[1..] {
        let _ = write!(
            s,
            "<h2>{} &minus; {}: paired per-prompt differences, 95% bootstrap intervals</h2><div class=\"charts\">",
            esc(&r.arms[0].name),
            esc(&b.name)
        );
        for c in r.comparisons.iter().filter(|c| c.b == b.name) {
            let ma = r.aggregates.get(&c.a).and_then(|m| m.get(&c.metric)).copied();
            let mb = r.aggregates.get(&c.b).and_then(|m| m.get(&c.metric)).copied();
            s.push_str(&chart(c, ma, mb));
        }
        s.push_str("</div>\n");
    }
    samples_side_by_side(&mut s, r, &names);
    s.push_str("</body></html>\n");
    s
}

/// The summary table: each arm's mean and each comparison per metric.
fn summary_table(s: &mut String, r: &AbResults, names: &[String]) {
    s.push_str("<h2>Summary</h2><table id=\"summary\"><tr><th>metric</th><th>better</th>");
    for n in names {
        let _ = write!(s, "<th>{}</th>", esc(n));
    }
    for b in &r.arms[1..] {
        let _ =
            write!(s, "<th>{} &minus; {} [95% CI]</th><th>p</th><th>verdict</th>", esc(&r.arms[0].name), esc(&b.name));
    }
    s.push_str("</tr>\n");
    for (metric, better, _, meaning) in METRICS {
        let vals: Vec<Option<f64>> =
            names.iter().map(|n| r.aggregates.get(n).and_then(|m| m.get(*metric)).copied()).collect();
        if vals.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(s, "<tr><td title=\"{}\">{}</td><td>{}</td>", esc(meaning), metric, better_str(*better));
        for v in &vals {
            let _ = write!(s, "<td class=\"num\">{}</td>", v.map_or("-".into(), fmt));
        }
        for b in &r.arms[1..] {
            match r.comparisons.iter().find(|c| c.b == b.name && c.metric == *metric) {
                Some(c) => {
                    let cls = if c.verdict != "no difference" { " win" } else { "" };
                    let _ = write!(
                        s,
                        "<td class=\"num\">{} [{}, {}]</td><td class=\"num\">{:.3}</td><td class=\"{cls}\">{}</td>",
                        fmt(c.test.diff),
                        fmt(c.test.ci_low),
                        fmt(c.test.ci_high),
                        c.test.p_value,
                        esc(&c.verdict)
                    );
                }
                None => s.push_str("<td>-</td><td>-</td><td>-</td>"),
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
}

/// Every prompt's samples, side by side by arm.
fn samples_side_by_side(s: &mut String, r: &AbResults, names: &[String]) {
    s.push_str("<h2>Samples</h2>\n");
    let cols = names.len();
    for (i, p) in r.prompts.iter().enumerate() {
        let _ = write!(
            s,
            "<div class=\"prompt\"><h3>Prompt {}</h3><p><b>{}</b></p><div class=\"cols\" style=\"grid-template-columns:repeat({cols},1fr)\">",
            i + 1,
            esc(&p.prompt)
        );
        for n in names {
            let _ = write!(s, "<div><h4>{}</h4>", esc(n));
            for smp in p.samples.get(n).into_iter().flatten() {
                let ppl = smp.metrics.get("fluency_ppl").copied().map_or("-".into(), fmt);
                let rep = smp.metrics.get("rep_4").copied().map_or("-".into(), fmt);
                let _ = write!(
                    s,
                    "<div class=\"sample\">{}<div class=\"m\">fluency ppl {ppl}, rep-4 {rep}</div></div>",
                    esc(&smp.continuation)
                );
            }
            s.push_str("</div>");
        }
        s.push_str("</div></div>\n");
    }
}
