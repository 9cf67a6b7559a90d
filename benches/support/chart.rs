//! A small SVG line chart, so the published chart is made by the project's own code.
#![allow(dead_code, unreachable_pub)]

/// A line chart with categorical x (equally spaced labels) and a y axis that is linear from 0, or
/// logarithmic (decades, with 2 and 5 between) when `log` is set, as a self-contained SVG
/// document. The first series is drawn thicker.
pub fn svg_chart(
    title: &str,
    x_title: &str,
    y_title: &str,
    xs: &[String],
    series: &[(String, Vec<f64>)],
    log: bool,
) -> String {
    const W: f64 = 860.0;
    const H: f64 = 460.0;
    const L: f64 = 70.0;
    const R: f64 = 230.0;
    const T: f64 = 50.0;
    const B: f64 = 60.0;
    const COLORS: [&str; 10] =
        ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let values = || series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite() && *v > 0.0);
    let max = values().fold(0.0f64, f64::max);
    let min = values().fold(f64::INFINITY, f64::min);
    let step = nice_step(max.max(1e-9) / 5.0);
    let top = (max / step).ceil().max(1.0) * step;
    // Log axis: whole decades around the data.
    let (lo_dec, hi_dec) = (min.max(1e-9).log10().floor(), max.max(1e-9).log10().ceil().max(min.log10().floor() + 1.0));
    let pw = W - L - R;
    let ph = H - T - B;
    let x_at = |i: usize| L + if xs.len() > 1 { pw * i as f64 / (xs.len() - 1) as f64 } else { pw / 2.0 };
    let y_at = |v: f64| {
        if log {
            T + ph - ph * (v.max(1e-12).log10() - lo_dec) / (hi_dec - lo_dec)
        } else {
            T + ph - ph * v / top
        }
    };
    let mut s = String::new();
    s += &format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    );
    s += &format!("<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n");
    s += &format!(
        "<text x=\"{}\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n",
        L + pw / 2.0,
        esc(title)
    );
    let ticks: Vec<f64> = if log {
        let mut t = Vec::new();
        let mut d = lo_dec;
        while d <= hi_dec + 0.5 {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powf(d);
                if v.log10() <= hi_dec + 1e-9 {
                    t.push(v);
                }
            }
            d += 1.0;
        }
        t
    } else {
        (0..).map(|i| i as f64 * step).take_while(|v| *v <= top + step / 2.0).collect()
    };
    for v in ticks {
        let y = y_at(v);
        s += &format!("<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n", L + pw);
        s += &format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n", L - 6.0, y + 4.0, trim_num(v));
    }
    for (i, x) in xs.iter().enumerate() {
        let px = x_at(i);
        s += &format!("<line x1=\"{px:.1}\" y1=\"{T}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\n", T + ph);
        s += &format!("<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n", T + ph + 18.0, esc(x));
    }
    s += &format!("<rect x=\"{L}\" y=\"{T}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n");
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        L + pw / 2.0,
        H - 15.0,
        esc(x_title)
    );
    s += &format!(
        "<text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">{}</text>\n",
        T + ph / 2.0,
        T + ph / 2.0,
        esc(y_title)
    );
    // Drawn last to first, so the first series ends up on top.
    for (k, (name, vals)) in series.iter().enumerate().rev() {
        let color = COLORS[k % COLORS.len()];
        let width = if k == 0 { 3.5 } else { 2.0 };
        let pts: Vec<String> = vals
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite() && (!log || **v > 0.0))
            .map(|(i, &v)| format!("{:.1},{:.1}", x_at(i), y_at(v)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" points=\"{}\"/>\n",
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            s += &format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"3.5\" fill=\"{color}\"/>\n");
        }
        let ly = T + 10.0 + 22.0 * k as f64;
        let lx = L + pw + 20.0;
        s += &format!(
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"{width}\"/>\n",
            lx + 24.0
        );
        s += &format!("<text x=\"{}\" y=\"{:.1}\">{}</text>\n", lx + 30.0, ly + 4.0, esc(name));
    }
    s += "</svg>\n";
    s
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
