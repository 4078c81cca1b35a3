//! The built-in page (`GET /ui`): server-rendered HTML over the store's facade,
//! read-only. A registry browser with search (name substring, owner, tag, entity
//! type), the groups and their active versions, freshness per feature with breaches
//! highlighted, and for one group (`?group=`) its versions with their validation
//! results, the drift of each numeric feature (quantiles of the active version against
//! the previous one) and its mean and std over the last versions.
//!
//! Charts are drawn in the browser by uPlot, vendored under `vendor/` and embedded in
//! the page (no network at run time, no build step). Every text from the registry or
//! the data is HTML-escaped; chart data travels as JSON inside a `<script
//! type="application/json">` element with `<` escaped.
//!
//! Stateless; safe from any thread.

use std::fmt::Write;

use crate::FeatureStore;
use crate::registry::DefinitionFilter;
use crate::store::StoreError;
use crate::types::TimestampMs;
use crate::validate::freshness;
use crate::validate::{Level, VersionStats};

const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// Numeric features drawn per group page, at most.
pub const MAX_CHARTS: usize = 24;
/// Versions the mean/std chart spans, at most.
pub const TREND_VERSIONS: usize = 10;

/// What the page was asked for (the query of `GET /ui`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// Substring of a feature name.
    pub name: Option<String>,
    /// Exact owner.
    pub owner: Option<String>,
    /// A tag.
    pub tag: Option<String>,
    /// Exact entity type.
    pub entity_type: Option<String>,
    /// The group whose versions to show.
    pub group: Option<String>,
}

/// Query keys the page accepts.
pub const QUERY_KEYS: [&str; 5] = ["name", "owner", "tag", "entity_type", "group"];

impl PageQuery {
    /// The query from decoded `(key, value)` pairs; empty values count as absent.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut q = PageQuery::default();
        for (key, value) in pairs {
            let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            match key.as_str() {
                "name" => q.name = value,
                "owner" => q.owner = value,
                "tag" => q.tag = value,
                "entity_type" => q.entity_type = value,
                "group" => q.group = value,
                _ => {}
            }
        }
        q
    }
}

/// HTML-escapes `text`.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string value, percent-encoded.
fn enc(text: &str) -> String {
    crate::api::routes::encode_component(text)
}

fn time_text(ms: TimestampMs) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn figure(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |x| format!("{x:.4}"))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}tr.breach td{background:#fde2e2}td.fail{color:#b00020;font-weight:600}\
td.warn{color:#9a6700}td.pass{color:#1a7f37}form input{margin-right:.6em}.charts{display:flex;flex-wrap:wrap;gap:1em}\
.chart{border:1px solid #ddd;padding:.3em}h2{margin-top:1.4em}";

/// Renders the page for `query`.
pub fn render(
    store: &FeatureStore,
    query: &PageQuery,
    now_ms: TimestampMs,
) -> Result<String, StoreError> {
    let mut html = String::with_capacity(64 * 1024);
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>featstore</title>\
         <style>{UPLOT_CSS}</style><style>{STYLE}</style></head><body><h1>featstore</h1>"
    );
    // A group's page leads with the group; the registry, groups and freshness follow.
    if let Some(group) = &query.group {
        group_section(store, group, &mut html)?;
    }
    registry_section(store, query, &mut html);
    groups_section(store, &mut html);
    freshness_section(store, now_ms, &mut html)?;
    let _ = write!(
        html,
        "<script>{UPLOT_JS}</script><script>{CHART_SCRIPT}</script></body></html>"
    );
    Ok(html)
}

fn registry_section(store: &FeatureStore, query: &PageQuery, html: &mut String) {
    let field = |name: &str, label: &str, value: &Option<String>| {
        format!(
            "<label>{label} <input name=\"{name}\" id=\"search-{name}\" value=\"{}\"></label>",
            esc(value.as_deref().unwrap_or_default())
        )
    };
    let _ = write!(
        html,
        "<h2>Registry</h2><form method=\"get\" action=\"/ui\" id=\"search\">{}{}{}{}\
         <button type=\"submit\" id=\"search-submit\">Search</button></form>",
        field("name", "name", &query.name),
        field("owner", "owner", &query.owner),
        field("tag", "tag", &query.tag),
        field("entity_type", "entity type", &query.entity_type),
    );
    let found = store.list_definitions(&DefinitionFilter {
        entity_type: query.entity_type.clone(),
        owner: query.owner.clone(),
        tag: query.tag.clone(),
        name: query.name.clone(),
        group: None,
    });
    let _ = write!(
        html,
        "<p id=\"match-count\">{} features</p><table id=\"features\"><tr><th>feature</th><th>group</th>\
         <th>entity type</th><th>owner</th><th>dtype</th><th>tags</th><th>freshness SLO</th></tr>",
        found.len()
    );
    for def in found.iter().take(500) {
        let spec = &def.spec;
        let slo = spec
            .freshness_slo
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr class=\"feature\"><td>{}</td><td><a href=\"/ui?group={}\">{}</a></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&def.qualified_name()),
            enc(&spec.group),
            esc(&spec.group),
            esc(&spec.entity_type),
            esc(&spec.owner),
            esc(&spec.dtype.to_string()),
            esc(&spec.tags.join(", ")),
            esc(&slo),
        );
    }
    html.push_str("</table>");
    if found.len() > 500 {
        html.push_str("<p>(first 500 shown: narrow the search)</p>");
    }
}

fn groups_section(store: &FeatureStore, html: &mut String) {
    html.push_str(
        "<h2>Groups</h2><table id=\"groups\"><tr><th>group</th><th>entity type</th><th>active version</th></tr>",
    );
    for (group, entity_type, active) in store.groups() {
        let _ = write!(
            html,
            "<tr><td><a href=\"/ui?group={}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            enc(&group),
            esc(&group),
            esc(&entity_type),
            active.map_or_else(|| "none".to_owned(), |v| v.to_string())
        );
    }
    html.push_str("</table>");
}

fn freshness_section(
    store: &FeatureStore,
    now_ms: TimestampMs,
    html: &mut String,
) -> Result<(), StoreError> {
    let facts = freshness::gather(store)?;
    let assessed = freshness::assess(&store.registry(), &facts, now_ms);
    let breaches = assessed.iter().filter(|f| f.breach).count();
    let _ = write!(
        html,
        "<h2>Freshness</h2><p id=\"breach-count\">{breaches} of {} features with an SLO breach it</p>\
         <table id=\"freshness\"><tr><th>feature</th><th>source</th><th>newest value</th>\
         <th>age (s)</th><th>SLO (s)</th><th>breach</th></tr>",
        assessed.len()
    );
    for f in &assessed {
        let _ = write!(
            html,
            "<tr class=\"{}\"><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td></tr>",
            if f.breach { "breach" } else { "fresh" },
            esc(&f.feature),
            f.source,
            f.newest_event_ms.map(time_text).unwrap_or_default(),
            f.age_seconds.map(|a| format!("{a:.0}")).unwrap_or_default(),
            f.slo_seconds,
            esc(&f.reasons.join("; ")),
        );
    }
    html.push_str("</table>");
    Ok(())
}

/// One drift chart's data: the quantile curves of two versions.
#[derive(serde::Serialize)]
struct DriftChart<'a> {
    id: String,
    feature: &'a str,
    title: String,
    labels: [String; 2],
    ranks: Vec<f64>,
    series: [Vec<Option<f64>>; 2],
}

/// The mean/std trend of one feature over versions.
#[derive(serde::Serialize)]
struct TrendChart {
    id: String,
    title: String,
    versions: Vec<f64>,
    mean: Vec<Option<f64>>,
    std: Vec<Option<f64>>,
}

fn group_section(store: &FeatureStore, group: &str, html: &mut String) -> Result<(), StoreError> {
    let versions = store.versions(group)?;
    let _ = write!(
        html,
        "<h2 id=\"group-title\">Group {} ({}), active version {}</h2>\
         <table id=\"versions\"><tr><th>version</th><th>state</th><th>active</th><th>loaded</th>\
         <th>entities</th><th>values</th><th>validation</th><th>findings</th><th>shadow check</th></tr>",
        esc(group),
        esc(&versions.entity_type),
        versions
            .active
            .map_or_else(|| "none".to_owned(), |v| v.to_string())
    );
    for v in versions.versions.iter().rev() {
        let (outcome, class, findings, shadow) =
            match v.load.as_ref().and_then(|l| l.validation.as_ref()) {
                None => ("not validated".to_owned(), "", String::new(), String::new()),
                Some(report) => {
                    let (outcome, class) = match (&report.forced, report.passed) {
                        (_, true) => (format!("passed ({} checks)", report.checks), "pass"),
                        (Some(f), false) => (
                            format!("failed, activated by {} ({})", esc(&f.by), esc(&f.reason)),
                            "warn",
                        ),
                        (None, false) => ("failed: not activated".to_owned(), "fail"),
                    };
                    let mut list = String::from("<ul class=\"findings\">");
                    for f in &report.findings {
                        let level = match f.level {
                            Level::Fail => "fail",
                            Level::Warn => "warn",
                            Level::Pass => "pass",
                        };
                        let _ = write!(
                            list,
                            "<li class=\"finding {level}\">{level}: {} {}: {}</li>",
                            esc(&f.feature),
                            esc(&f.rule),
                            esc(&f.message)
                        );
                    }
                    list.push_str("</ul>");
                    let shadow = report.shadow.as_ref().map_or_else(String::new, |s| {
                        let mut text =
                            format!("vs v{} on {} hot entities:", s.active_version, s.entities);
                        for f in s.features.iter().take(8) {
                            let _ = write!(
                                text,
                                " {} {:.0}% changed{};",
                                esc(&f.feature),
                                f.changed_share * 100.0,
                                f.mean_shift
                                    .map(|m| format!(", mean {m:+.2} sd"))
                                    .unwrap_or_default()
                            );
                        }
                        text
                    });
                    (outcome, class, list, shadow)
                }
            };
        let _ = write!(
            html,
            "<tr id=\"version-{}\"><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"{class}\">{outcome}</td><td>{findings}</td><td>{shadow}</td></tr>",
            v.version,
            v.version,
            v.state,
            if v.active { "yes" } else { "" },
            time_text(v.created_at_ms),
            v.load.as_ref().map_or(0, |l| l.entities),
            v.load.as_ref().map_or(0, |l| l.values_stored),
        );
    }
    html.push_str("</table>");

    // Drift: the active version against the one before it (by number).
    let numbers: Vec<u64> = versions.versions.iter().map(|v| v.version).collect();
    let stats: Vec<VersionStats> = numbers
        .iter()
        .rev()
        .take(TREND_VERSIONS)
        .filter_map(|v| store.version_stats(group, *v).ok())
        .collect();
    let current = versions
        .active
        .and_then(|a| stats.iter().find(|s| s.version == a))
        .or_else(|| stats.first());
    let Some(current) = current else {
        html.push_str("<p>No statistics for this group's versions.</p>");
        return Ok(());
    };
    let previous = stats.iter().find(|s| s.version < current.version);
    let mut drift = Vec::new();
    let mut trends = Vec::new();
    for (i, (name, cur)) in current
        .features
        .iter()
        .filter(|(_, f)| !f.quantiles.is_empty())
        .take(MAX_CHARTS)
        .enumerate()
    {
        let prev = previous.and_then(|p| p.features.get(name));
        let ranks: Vec<f64> = cur.quantiles.iter().map(|q| q.rank).collect();
        let at = |f: Option<&crate::validate::FeatureStats>| -> Vec<Option<f64>> {
            ranks
                .iter()
                .map(|r| {
                    f.and_then(|f| f.quantiles.iter().find(|q| (q.rank - r).abs() < 1e-9))
                        .map(|q| q.value)
                })
                .collect()
        };
        drift.push(DriftChart {
            id: format!("drift-{i}"),
            feature: name,
            title: format!("{name}: quantiles, v{} vs previous", current.version),
            labels: [
                format!("v{}", current.version),
                previous.map_or_else(|| "no previous".to_owned(), |p| format!("v{}", p.version)),
            ],
            series: [at(Some(cur)), at(prev)],
            ranks,
        });
        let mut history: Vec<&VersionStats> = stats.iter().collect();
        history.sort_by_key(|s| s.version);
        trends.push(TrendChart {
            id: format!("trend-{i}"),
            title: format!("{name}: mean and std over versions"),
            versions: history.iter().map(|s| s.version as f64).collect(),
            mean: history
                .iter()
                .map(|s| s.features.get(name).and_then(|f| f.mean))
                .collect(),
            std: history
                .iter()
                .map(|s| s.features.get(name).and_then(|f| f.std))
                .collect(),
        });
    }
    let _ = write!(
        html,
        "<h2>Statistics of v{}</h2><table id=\"stats\"><tr><th>feature</th><th>values</th><th>null rate</th>\
         <th>min</th><th>max</th><th>mean</th><th>std</th><th>distinct</th></tr>",
        current.version
    );
    for (name, f) in &current.features {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            f.values,
            f.null_rate,
            figure(f.min),
            figure(f.max),
            figure(f.mean),
            figure(f.std),
            f.distinct.map(|d| format!("{d:.0}")).unwrap_or_default()
        );
    }
    html.push_str("</table><h2>Drift</h2><div class=\"charts\" id=\"drift-charts\">");
    for chart in drift
        .iter()
        .map(|c| &c.id)
        .chain(trends.iter().map(|c| &c.id))
    {
        let _ = write!(html, "<div class=\"chart\" id=\"{chart}\"></div>");
    }
    html.push_str("</div>");
    let data = serde_json::json!({"drift": drift, "trends": trends}).to_string();
    let _ = write!(
        html,
        "<script type=\"application/json\" id=\"chart-data\">{}</script>",
        data.replace('<', "\\u003c")
    );
    Ok(())
}

/// Draws the charts from `#chart-data` with uPlot; each drawn chart's element gets
/// `data-rendered="true"` (the browser test checks it).
const CHART_SCRIPT: &str = r#"
(function () {
  var el = document.getElementById('chart-data');
  if (!el) return;
  var data = JSON.parse(el.textContent);
  function draw(id, title, x, series, labels) {
    var target = document.getElementById(id);
    var opts = {title: title, width: 420, height: 240, scales: {x: {time: false}},
      series: [{label: 'x'}].concat(series.map(function (_, i) {
        return {label: labels[i], stroke: ['#1f77b4', '#d62728', '#2ca02c'][i], width: 2};
      }))};
    new uPlot(opts, [x].concat(series), target);
    target.setAttribute('data-rendered', 'true');
  }
  data.drift.forEach(function (c) { draw(c.id, c.title, c.ranks, c.series, c.labels); });
  data.trends.forEach(function (c) { draw(c.id, c.title, c.versions, [c.mean, c.std], ['mean', 'std']); });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn queries_drop_empty_values() {
        let q = PageQuery::from_pairs(vec![
            ("name".into(), " ctr ".into()),
            ("owner".into(), "".into()),
            ("group".into(), "g".into()),
        ]);
        assert_eq!(q.name.as_deref(), Some("ctr"));
        assert_eq!(q.owner, None);
        assert_eq!(q.group.as_deref(), Some("g"));
    }
}
