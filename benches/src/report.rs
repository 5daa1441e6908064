//! The benchmark report: markdown with tables, and SVG bar charts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;

/// A whole report: a preamble, then sections in order.
#[derive(Default)]
pub struct Report {
    pub preamble: Vec<String>,
    pub sections: Vec<Section>,
}

/// One measured topic: what it is, its figures, its charts.
#[derive(Default)]
pub struct Section {
    pub title: String,
    pub text: String,
    pub table: Table,
    pub charts: Vec<Chart>,
}

#[derive(Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn markdown(&self) -> String {
        if self.header.is_empty() {
            return String::new();
        }
        let mut out = format!("| {} |\n|", self.header.join(" | "));
        for (i, _) in self.header.iter().enumerate() {
            out.push_str(if i == 0 { "---|" } else { "---:|" });
        }
        out.push('\n');
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

/// A horizontal bar chart, one bar per label.
pub struct Chart {
    /// File name, e.g. `throughput.svg`.
    pub file: String,
    pub title: String,
    /// Axis caption, with the unit.
    pub axis: String,
    pub bars: Vec<(String, f64)>,
    /// For values spanning orders of magnitude (start times).
    pub log_scale: bool,
}

impl Report {
    /// Writes `report.md` and every chart into `dir`; returns the report's
    /// path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for chart in self.sections.iter().flat_map(|s| &s.charts) {
            chart.draw(&dir.join(&chart.file))?;
        }
        let path = dir.join("report.md");
        std::fs::write(&path, self.markdown())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The sections as markdown, charts linked by file name.
    pub fn body_markdown(&self, chart_dir: &str) -> String {
        let mut out = String::new();
        for section in &self.sections {
            let _ = writeln!(out, "## {}\n", section.title);
            if !section.text.is_empty() {
                let _ = writeln!(out, "{}\n", section.text);
            }
            let table = section.table.markdown();
            if !table.is_empty() {
                let _ = writeln!(out, "{table}");
            }
            for chart in &section.charts {
                let _ = writeln!(out, "![{}]({chart_dir}{})\n", chart.title, chart.file);
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = String::from("# Verge benchmark report\n\n");
        for paragraph in &self.preamble {
            let _ = writeln!(out, "{paragraph}\n");
        }
        out + &self.body_markdown("")
    }
}

impl Chart {
    fn draw(&self, path: &Path) -> Result<()> {
        let height = 90 + 34 * self.bars.len() as u32;
        let root = SVGBackend::new(path, (820, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = self
            .bars
            .iter()
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.15;
        let min = self
            .bars
            .iter()
            .map(|(_, v)| *v)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min)
            .min(max)
            / 2.0;
        // Bars are drawn bottom-up; reversing puts the first one on top.
        let bars: Vec<&(String, f64)> = self.bars.iter().rev().collect();
        let labels: Vec<&str> = bars.iter().map(|(l, _)| l.as_str()).collect();
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(190);
        let rows = 0..self.bars.len();
        macro_rules! draw_on {
            ($x:expr) => {{
                let mut chart = builder.build_cartesian_2d($x, rows.clone().into_segmented())?;
                chart
                    .configure_mesh()
                    .disable_y_mesh()
                    .x_desc(&self.axis)
                    .x_label_formatter(&|v| format_value(*v))
                    .y_label_formatter(&|seg| match seg {
                        SegmentValue::CenterOf(i) => {
                            labels.get(*i).copied().unwrap_or("").to_owned()
                        }
                        _ => String::new(),
                    })
                    .y_labels(self.bars.len())
                    .draw()?;
                let floor = if self.log_scale { min } else { 0.0 };
                chart.draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
                    let color = Palette99::pick(bars.len() - 1 - i).to_rgba();
                    let mut bar = Rectangle::new(
                        [
                            (floor, SegmentValue::Exact(i)),
                            (value.max(floor), SegmentValue::Exact(i + 1)),
                        ],
                        color.filled(),
                    );
                    bar.set_margin(5, 5, 0, 0);
                    bar
                }))?;
                chart.draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
                    Text::new(
                        format_value(*value),
                        (value.max(floor), SegmentValue::CenterOf(i)),
                        ("sans-serif", 13),
                    )
                }))?;
            }};
        }
        if self.log_scale {
            draw_on!((min..max).log_scale());
        } else {
            draw_on!(0.0..max);
        }
        root.present()?;
        Ok(())
    }
}

/// A number with the precision its size deserves.
pub fn format_value(value: f64) -> String {
    if value >= 1000.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}
