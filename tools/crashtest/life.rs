//! The crash test's main loop: one iteration per server life. A life starts the
//! server, checks it against the model, runs the workload (or a fault episode) and
//! ends with a SIGKILL at a moment chosen by its [`KillAt`]; between two lives the data
//! directory is checked as it was left ([`crate::raw`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Args;
use crate::client::Client;
use crate::data::{self, Group, LIVE_COUNT, LIVE_N, LIVE_S, LoadInput, POOL, USER, USERS};
use crate::faults::{self, Scenario, Shim, Target};
use crate::model::{Certainty, GroupModel, Listing, SendOutcome};
use crate::raw::{self, LastLife, Snapshot};
use crate::server::{self, Launch, Server};
use crate::workload::{self, ArmedFault, Shared, lock};

/// Versions kept per group (the server's `keep_versions`, see [`server::write_store_config`]).
const KEEP: usize = 3;
/// How long a server may take to open and listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after listening `/readyz` must answer 200.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// A life without another kill trigger ends after this long.
const MAX_LIFE: Duration = Duration::from_secs(4);
/// Request timeout (a load of a few hundred rows takes milliseconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// When a life's server is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KillAt {
    /// This many ms after the spawn, while (or just after) it opens the store.
    Startup(u64),
    /// As soon as it is ready, before anything else.
    Ready,
    /// `delay_ms` after the `nth` load of the life is sent.
    DuringLoad { nth: u32, delay_ms: u64 },
    /// `delay_us` after the `nth` activation, rollback or drop is sent.
    DuringAdmin { nth: u32, delay_us: u64 },
    /// After this many ms of mixed work (pushes are always in flight).
    Timer(u64),
    /// After a fault episode and a little more work.
    AfterFault(u64),
}

impl KillAt {
    fn name(self) -> &'static str {
        match self {
            KillAt::Startup(_) => "during open",
            KillAt::Ready => "right after open",
            KillAt::DuringLoad { .. } => "during a load",
            KillAt::DuringAdmin { .. } => "during activate/rollback/drop",
            KillAt::Timer(_) => "at a random moment (pushes in flight)",
            KillAt::AfterFault(_) => "after a fault episode",
        }
    }
}

/// What the main thread tells the killer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Load,
    Admin,
    Now,
}

/// The thread that SIGKILLs the server when its plan says.
struct Killer {
    tx: mpsc::Sender<Event>,
    /// Set just before the kill.
    killed: Arc<AtomicBool>,
    /// Set once the process is gone.
    dead: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Killer {
    fn start(server: Arc<Mutex<Server>>, plan: KillAt) -> Killer {
        let (tx, rx) = mpsc::channel();
        let killed = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(AtomicBool::new(false));
        let (flag, gone) = (killed.clone(), dead.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now()
                + match plan {
                    KillAt::Timer(ms) => Duration::from_millis(ms),
                    // A fault episode ends the life itself (Event::Now).
                    KillAt::AfterFault(_) => Duration::from_secs(3600),
                    _ => MAX_LIFE,
                };
            let mut seen = 0;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Event::Load) => {
                        if let KillAt::DuringLoad { nth, delay_ms } = plan {
                            seen += 1;
                            if seen == nth {
                                std::thread::sleep(Duration::from_millis(delay_ms));
                                break;
                            }
                        }
                    }
                    Ok(Event::Admin) => {
                        if let KillAt::DuringAdmin { nth, delay_us } = plan {
                            seen += 1;
                            if seen == nth {
                                std::thread::sleep(Duration::from_micros(delay_us));
                                break;
                            }
                        }
                    }
                    Ok(Event::Now) | Err(_) => break,
                }
            }
            // The flag first: a request that fails from now on may have been cut by the kill.
            flag.store(true, Ordering::SeqCst);
            lock(&server).kill();
            gone.store(true, Ordering::SeqCst);
        });
        Killer {
            tx,
            killed,
            dead,
            thread: Some(thread),
        }
    }

    fn notify(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Kills now and waits until the process is gone.
    fn kill_now(&self) {
        self.notify(Event::Now);
        while !self.dead.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills now if the plan has not yet, and waits for it.
    fn finish(&mut self) {
        let _ = self.tx.send(Event::Now);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What happened under one fault scenario, over the run.
#[derive(Debug, Default, Clone)]
pub struct FaultStats {
    episodes: u64,
    injected: i64,
    failed_requests: u64,
    recovered: u64,
    restart_needed: u64,
    killed_while_failing: u64,
    /// Restarts tried while the fault still failed: the open failed naming the error.
    open_failed_clearly: u64,
    /// Restarts tried while the fault still failed: the store opened anyway.
    opened_anyway: u64,
    slowest_recovery: Duration,
}

/// Counts of admin operations by outcome.
#[derive(Debug, Default, Clone)]
struct OpStats {
    acked: u64,
    refused: u64,
    failed: u64,
    interrupted: u64,
}

impl OpStats {
    fn line(&self) -> String {
        format!(
            "{} acknowledged, {} refused, {} failed (faults), {} interrupted by kills",
            self.acked, self.refused, self.failed, self.interrupted
        )
    }
}

/// How an operation's request ended.
enum Answer {
    Ok(serde_json::Value),
    Refused(u16, String),
    Failed(u16, String),
    /// No answer, or a 503 of an overloaded server that sheds load (`shed`): not
    /// known to have happened.
    Lost {
        shed: bool,
    },
}

/// The whole run.
pub struct Run {
    args: Args,
    seed: u64,
    work: PathBuf,
    data: PathBuf,
    inputs: PathBuf,
    launch: Launch,
    shim: Option<Shim>,
    shared: Arc<Shared>,
    feature_ids: BTreeMap<u32, (Group, usize)>,
    registered: bool,
    next_load: u64,
    before: Option<Snapshot>,
    last: LastLife,
    lives: u64,
    started: Instant,
    kill_points: BTreeMap<&'static str, u64>,
    faults: BTreeMap<Scenario, FaultStats>,
    load_ms: f64,
    loads: OpStats,
    loads_activated: u64,
    bad_refused: u64,
    activations: OpStats,
    rollbacks: OpStats,
    drops: OpStats,
    whole_checks: u64,
    /// A server error answered an operation in this life: in-life listings are
    /// compared with the model but do not narrow it (the durable state may differ
    /// from the served one until a restart).
    uncertain_in_life: bool,
    /// The fault of this life is armed (or its effects may still be in the way).
    fault_mode: bool,
    /// A fault to keep failing while the next life first tries to open the store.
    open_on_failing_disk: Option<(Scenario, faults::Fault)>,
}

fn life_seed(seed: u64, life: u64, salt: u64) -> u64 {
    let mut x =
        seed ^ life.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt.wrapping_mul(0xd1b5_4a32_d192_ed03);
    x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

impl Run {
    /// Prepares the working directory, the server's configuration and the fault shim.
    pub fn new(args: &Args, seed: u64, featstore: PathBuf, work: PathBuf) -> Result<Run> {
        if !featstore.exists() {
            bail!(
                "no featstore binary at {} (build it, or pass --featstore)",
                featstore.display()
            );
        }
        let data = work.join("data");
        let inputs = work.join("inputs");
        std::fs::create_dir_all(&inputs)?;
        let config = work.join("store.toml");
        server::write_store_config(&config)?;
        let shim = if args.fault_every > 0 {
            Some(Shim::build(&work, &args.cc).context(
                "building the fault shim (needs a C compiler; --fault-every 0 runs without faults)",
            )?)
        } else {
            None
        };
        let env = shim.as_ref().map(|s| s.env(&data)).unwrap_or_default();
        std::fs::create_dir_all(&data)?;
        let shared = Arc::new(Shared::new(workload::now_ms()));
        *lock(&shared.trace) = Some(std::io::BufWriter::new(std::fs::File::create(
            work.join("ops.log"),
        )?));
        Ok(Run {
            args: args.clone(),
            seed,
            launch: Launch {
                binary: featstore,
                data: data.clone(),
                config,
                imports: inputs.clone(),
                log: work.join("server.log"),
                env,
            },
            work,
            data,
            inputs,
            shim,
            shared,
            feature_ids: BTreeMap::new(),
            registered: false,
            next_load: 1,
            before: None,
            last: LastLife::default(),
            lives: 0,
            started: Instant::now(),
            kill_points: BTreeMap::new(),
            faults: BTreeMap::new(),
            load_ms: 50.0,
            loads: OpStats::default(),
            loads_activated: 0,
            bad_refused: 0,
            activations: OpStats::default(),
            rollbacks: OpStats::default(),
            drops: OpStats::default(),
            whole_checks: 0,
            uncertain_in_life: false,
            fault_mode: false,
            open_on_failing_disk: None,
        })
    }

    fn shim(&self) -> Result<&Shim> {
        self.shim.as_ref().context("fault injection needs the shim")
    }

    fn violation(&self, kind: &'static str, detail: impl Into<String>) {
        self.shared.violation(kind, detail);
    }

    fn kills(&self) -> u64 {
        self.kill_points.values().sum()
    }

    /// Runs lives until the kill count or the time is reached, or an invariant breaks.
    /// True when none broke.
    pub fn execute(&mut self) -> Result<bool> {
        let deadline = self.started + self.args.duration;
        while self.kills() < self.args.kills && Instant::now() < deadline {
            self.lives += 1;
            self.shared.life.store(self.lives, Ordering::Relaxed);
            self.check_directory();
            if self.shared.failed() {
                break;
            }
            self.life()?;
            if self.shared.failed() {
                break;
            }
            if self.args.verbose || self.lives.is_multiple_of(25) {
                println!(
                    "crashtest: {} kills in {:.0}s, {} events acknowledged, {} reads checked",
                    self.kills(),
                    self.started.elapsed().as_secs_f64(),
                    self.shared.counters.events_acked.load(Ordering::Relaxed),
                    self.shared.counters.reads_checked.load(Ordering::Relaxed)
                );
            }
        }
        if !self.shared.failed() {
            // The state the last kill left is checked too.
            self.lives += 1;
            self.shared.life.store(self.lives, Ordering::Relaxed);
            self.check_directory();
        }
        Ok(!self.shared.failed())
    }

    /// Checks the data directory as the last kill left it.
    fn check_directory(&mut self) {
        let snapshot = match raw::inspect(&self.data) {
            Ok(s) => s,
            Err(e) => {
                self.violation(
                    "repair",
                    format!("the data directory cannot be opened read-only after a kill: {e:#}"),
                );
                return;
            }
        };
        if self.lives > 1 {
            let found = {
                let groups = lock(&self.shared.groups);
                raw::verify(
                    &snapshot,
                    self.before.as_ref(),
                    self.last,
                    &self.feature_ids,
                    &groups,
                )
            };
            for (kind, detail) in found {
                self.violation(kind, detail);
            }
        }
        self.before = Some(snapshot);
    }

    fn choose_kill(&self, rng: &mut ChaCha8Rng) -> KillAt {
        match rng.random_range(0..100) {
            // The open of this small store takes some tens of milliseconds.
            0..8 => KillAt::Startup(rng.random_range(0..60)),
            8..15 => KillAt::Ready,
            15..45 => KillAt::DuringLoad {
                nth: rng.random_range(1..=2),
                delay_ms: rng.random_range(0..=((self.load_ms * 1.3) as u64).max(1)),
            },
            45..65 => KillAt::DuringAdmin {
                nth: rng.random_range(1..=3),
                delay_us: rng.random_range(0..3_000),
            },
            _ => KillAt::Timer(rng.random_range(100..1_500)),
        }
    }

    /// One server life.
    fn life(&mut self) -> Result<()> {
        let life = self.lives;
        let mut rng = ChaCha8Rng::seed_from_u64(life_seed(self.seed, life, 0));
        let every = self.args.fault_every;
        let scenario =
            (self.shim.is_some() && self.registered && every > 0 && life.is_multiple_of(every))
                .then(|| {
                    let pool: &[Scenario] = if self.args.scenarios.is_empty() {
                        &Scenario::ALL
                    } else {
                        &self.args.scenarios
                    };
                    pool[((life / every) as usize) % pool.len()]
                });
        let kill = match scenario {
            Some(_) => KillAt::AfterFault(rng.random_range(50..400)),
            None => self.choose_kill(&mut rng),
        };
        self.last = LastLife {
            listened: false,
            idle: false,
            faulted: scenario.is_some(),
        };
        self.uncertain_in_life = false;
        self.fault_mode = false;
        let banner = format!("life {life}: kill {kill:?}, fault {scenario:?}");
        self.shared.trace(&banner);
        if self.args.verbose {
            println!("crashtest: {banner}");
        }
        if let Some((scenario, fault)) = self.open_on_failing_disk.take() {
            self.open_while_failing(scenario, &fault, life)?;
        }
        let server = Arc::new(Mutex::new(Server::spawn(&self.launch, &banner)?));
        if let KillAt::Startup(ms) = kill {
            std::thread::sleep(Duration::from_millis(ms));
            let mut s = lock(&server);
            // Listening already means the open completed.
            let _ = s.wait_listening(Duration::ZERO);
            s.kill();
            self.last.listened = s.listened();
            let point = if s.listened() {
                "just after open, before any request"
            } else {
                kill.name()
            };
            *self.kill_points.entry(point).or_default() += 1;
            return Ok(());
        }
        *self.kill_points.entry(kill.name()).or_default() += 1;
        let base = match lock(&server).wait_listening(LISTEN_TIMEOUT) {
            Ok(base) => base,
            Err(e) => {
                self.violation("repair", format!("{e:#}; server log: {}", self.log_tail()));
                return Ok(());
            }
        };
        self.last.listened = true;
        let client = Client::new(&base, REQUEST_TIMEOUT);
        if let Err(e) = wait_ready(&client, READY_TIMEOUT) {
            self.violation("repair", format!("not ready after a restart: {e}"));
            lock(&server).kill();
            return Ok(());
        }
        if kill == KillAt::Ready {
            lock(&server).kill();
            self.last.idle = true;
            return Ok(());
        }
        if !self.registered {
            self.register(&client)?;
        }
        self.after_restart(&client, &mut rng);
        if self.shared.failed() {
            lock(&server).kill();
            return Ok(());
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for p in 0..2 {
            let (shared, c, s) = (self.shared.clone(), client.clone(), stop.clone());
            let seed = life_seed(self.seed, life, 10 + p);
            threads.push(std::thread::spawn(move || {
                workload::producer(shared, c, s, seed)
            }));
        }
        {
            let (shared, c, s) = (self.shared.clone(), client.clone(), stop.clone());
            let seed = life_seed(self.seed, life, 20);
            threads.push(std::thread::spawn(move || {
                workload::reader(shared, c, s, seed)
            }));
        }
        let mut killer = Killer::start(server.clone(), kill);
        match scenario {
            Some(scenario) => {
                let recovered = self.fault_episode(scenario, &client, &killer, &mut rng)?;
                // More work only on a server that recovered; one that needs a restart
                // gets it now.
                if recovered && let KillAt::AfterFault(ms) = kill {
                    let until = Instant::now() + Duration::from_millis(ms);
                    while Instant::now() < until && !killer.killed() {
                        self.admin_op(&client, &killer, &mut rng)?;
                    }
                }
            }
            None => {
                while !killer.killed() && !self.shared.failed() {
                    self.admin_op(&client, &killer, &mut rng)?;
                    std::thread::sleep(Duration::from_millis(rng.random_range(0..20)));
                }
            }
        }
        killer.finish();
        self.shared.trace("killed");
        self.shared.flush_trace();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            let _ = t.join();
        }
        if let Some(shim) = &self.shim {
            shim.disarm()?;
        }
        *lock(&self.shared.armed) = None;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.launch.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(15).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Applies the registry (once per run) and learns the feature ids.
    fn register(&mut self, client: &Client) -> Result<()> {
        let reply = client
            .post("/v1/feature-definitions", &data::registry_json())
            .map_err(|e| anyhow::anyhow!("registering features: {e}"))?;
        if reply.status != 200 {
            bail!(
                "registering features answered {}: {}",
                reply.status,
                reply.body
            );
        }
        let reply = client
            .get("/v1/feature-definitions")
            .map_err(|e| anyhow::anyhow!("listing features: {e}"))?;
        for def in reply
            .json()
            .get("features")
            .and_then(|f| f.as_array())
            .into_iter()
            .flatten()
        {
            let (Some(id), Some(name)) = (
                def.get("id").and_then(|v| v.as_u64()),
                def.get("name").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            for group in Group::ALL {
                if let Some(f) = group.features().iter().position(|f| f.name == name) {
                    self.feature_ids
                        .insert(u32::try_from(id).unwrap_or(u32::MAX), (group, f));
                }
            }
        }
        if self.feature_ids.len() != data::batch_feature_names().len() {
            bail!(
                "the registry lists {} batch features",
                self.feature_ids.len()
            );
        }
        self.registered = true;
        Ok(())
    }

    /// Lists a group's versions, learns version numbers and compares the listing with
    /// the model (narrowing it when `narrow`).
    fn check_listing(&mut self, client: &Client, group: Group, narrow: bool, after_open: bool) {
        let reply = match client.get(&format!("/v1/groups/{}/versions", group.name())) {
            Ok(r) if r.status == 200 => r.json(),
            Ok(r) => {
                self.violation(
                    "state",
                    format!("listing {} answered {}: {}", group.name(), r.status, r.body),
                );
                return;
            }
            Err(_) => return,
        };
        let mut by_version = BTreeMap::new();
        let mut loads = BTreeSet::new();
        let mut problems = Vec::new();
        for v in reply
            .get("versions")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let version = v.get("version").and_then(|x| x.as_u64()).unwrap_or(0);
            let state = v.get("state").and_then(|x| x.as_str()).unwrap_or("?");
            if state == "loading" {
                if after_open {
                    problems.push((
                        "orphan",
                        format!("{} v{version} is `loading` after a restart", group.name()),
                    ));
                }
                continue;
            }
            let source = v
                .get("load")
                .and_then(|l| l.get("source"))
                .and_then(|s| s.as_str())
                .and_then(data::load_from_source);
            match source {
                Some((g, load)) if g == group => {
                    by_version.insert(version, load);
                    loads.insert(load);
                }
                _ => problems.push((
                    "partial",
                    format!(
                        "{} v{version} has no load record of a test input: {v}",
                        group.name()
                    ),
                )),
            }
        }
        let to_load = |key: &str| {
            reply
                .get(key)
                .and_then(|x| x.as_u64())
                .map(|v| by_version.get(&v).copied().ok_or(v))
        };
        let active = to_load("active");
        let target = to_load("rollback_target");
        let mut groups = lock(&self.shared.groups);
        let model = groups.entry(group).or_default();
        for (version, load) in &by_version {
            if let Err(e) = model.learn(*version, *load) {
                problems.push(("state", format!("{}: {e}", group.name())));
            }
        }
        let (active, target) = match (active.transpose(), target.transpose()) {
            (Ok(a), Ok(t)) => (a, t),
            _ => {
                problems.push((
                    "state",
                    format!(
                        "{}: the active or rollback version is not listed: {reply}",
                        group.name()
                    ),
                ));
                drop(groups);
                for (k, d) in problems {
                    self.violation(k, d);
                }
                return;
            }
        };
        let listing = Listing {
            loads,
            active,
            rollback_target: target,
        };
        let matched = if narrow {
            model.observe(&listing)
        } else {
            let mut copy = GroupModel {
                candidates: model.candidates.clone(),
                ..GroupModel::default()
            };
            copy.observe(&listing)
        };
        self.shared.trace(format!(
            "{} listed {listing:?} (narrow {narrow}): {}",
            group.name(),
            if matched {
                "matches"
            } else {
                "MATCHES NO STATE"
            }
        ));
        if !matched {
            for state in &model.candidates {
                self.shared.trace(format!("  possible: {state:?}"));
            }
            let shown: Vec<_> = model.candidates.iter().take(4).collect();
            problems.push((
                "state",
                format!(
                    "{}: the server lists {listing:?}, which no acknowledged history allows ({} possible states, e.g. {shown:?})",
                    group.name(),
                    model.candidates.len()
                ),
            ));
        }
        drop(groups);
        for (k, d) in problems {
            self.violation(k, d);
        }
    }

    /// Reads every entity of both groups in one ranking request and checks each row
    /// against the version that answered; when the model knows the state, the versions
    /// answering must be the active ones.
    fn check_whole(&mut self, client: &Client) {
        let ids: Vec<String> = (0..POOL).map(|e| format!("e{e}")).collect();
        let body = serde_json::json!({"candidates": {"entity_type": data::ITEM, "ids": ids},
            "features": data::batch_feature_names()})
        .to_string();
        let reply = match client.post("/v1/rank", &body) {
            Ok(r) if r.status == 200 => r.json(),
            Ok(r) => {
                self.violation(
                    "state",
                    format!("a full read answered {}: {}", r.status, r.body),
                );
                return;
            }
            Err(_) => return,
        };
        self.whole_checks += 1;
        let versions = workload::check_rank_batch(&self.shared, &reply);
        let groups = lock(&self.shared.groups);
        let mut wrong = Vec::new();
        for group in Group::ALL {
            let Some(model) = groups.get(&group) else {
                continue;
            };
            let Some(state) = model.known() else { continue };
            let expected = state.active.map(|l| model.version_of.get(&l).copied());
            let answered = versions.get(&group).copied();
            match expected {
                Some(Some(v)) if answered != Some(v) => wrong.push(format!(
                    "{}: version {v} (load {:?}) is active, but reads answer {answered:?}",
                    group.name(),
                    state.active
                )),
                None if answered.is_some() => wrong.push(format!(
                    "{}: no version is active, but reads answer {answered:?}",
                    group.name()
                )),
                _ => {}
            }
        }
        drop(groups);
        for w in wrong {
            self.violation("state", w);
        }
        // Two single reads too: the other read path.
        let names = data::batch_feature_names().join(",");
        for e in [0, POOL - 1] {
            if let Ok(r) = client.get(&format!("/v1/features/{}/e{e}?names={names}", data::ITEM))
                && r.status == 200
            {
                workload::check_single_batch(&self.shared, &r.json(), e);
            }
        }
    }

    /// Checks a freshly restarted server against the model.
    fn after_restart(&mut self, client: &Client, rng: &mut ChaCha8Rng) {
        for group in Group::ALL {
            self.check_listing(client, group, true, true);
        }
        self.check_whole(client);
        self.resolve_deferred();
        self.check_all_users(client);
        self.replay_acknowledged(client, rng);
    }

    /// Checks the reads whose version is now identified; forgets those older than two
    /// lives that never will be.
    fn resolve_deferred(&mut self) {
        let life = self.lives;
        let mut found = Vec::new();
        {
            let mut groups = lock(&self.shared.groups);
            for (group, model) in groups.iter_mut() {
                let pending = std::mem::take(&mut model.deferred);
                for d in pending {
                    if model.load_of.contains_key(&d.version) {
                        match model.check_entity(*group, Some(d.version), d.entity, &d.got, d.life)
                        {
                            Ok(_) => {}
                            Err(v) => found.push(v),
                        }
                    } else if d.life + 2 > life {
                        model.deferred.push(d);
                    }
                }
            }
        }
        for (kind, detail) in found.into_iter().take(5) {
            self.violation(kind, detail);
        }
    }

    /// Reads every user's pushed features in one ranking request (and two single
    /// reads) and checks them; nothing is in flight, so the bounds are exact.
    fn check_all_users(&mut self, client: &Client) {
        let ids: Vec<String> = (0..USERS).map(|u| format!("u{u}")).collect();
        let body = serde_json::json!({"candidates": {"entity_type": USER, "ids": ids},
            "features": [LIVE_N, LIVE_S, LIVE_COUNT]})
        .to_string();
        let floors = lock(&self.shared.stream).floors.clone();
        match client.post("/v1/rank", &body) {
            Ok(r) if r.status == 200 => match crate::answers::rank_live(&r.json()) {
                Ok(rows) => {
                    for (id, read) in rows {
                        let user = id
                            .strip_prefix('u')
                            .and_then(|n| n.parse::<usize>().ok())
                            .unwrap_or(USERS);
                        if user >= USERS {
                            self.violation("state", format!("ranking row for unknown user {id}"));
                            continue;
                        }
                        workload::check_live(&self.shared, user, floors[user], Ok(read));
                    }
                }
                Err(e) => self.violation("torn", format!("users: {e}")),
            },
            Ok(r) => self.violation(
                "state",
                format!("reading users answered {}: {}", r.status, r.body),
            ),
            Err(_) => {}
        }
        for user in [0, USERS - 1] {
            if let Ok(r) = client.get(&format!(
                "/v1/features/{USER}/u{user}?names={LIVE_N},{LIVE_S},{LIVE_COUNT}"
            )) && r.status == 200
            {
                workload::check_live(
                    &self.shared,
                    user,
                    floors[user],
                    crate::answers::single_live(&r.json()),
                );
            }
        }
    }

    /// Pushes a few acknowledged events again: each must be a duplicate (its event id
    /// survived the kill).
    fn replay_acknowledged(&mut self, client: &Client, rng: &mut ChaCha8Rng) {
        let picks: Vec<(usize, usize, i64)> = {
            let stream = lock(&self.shared.stream);
            let acked: Vec<usize> = (0..stream.events.len())
                .filter(|s| stream.events[*s].acked)
                .collect();
            (0..6.min(acked.len()))
                .map(|_| acked[rng.random_range(0..acked.len())])
                .map(|s| (s, stream.events[s].user, stream.events[s].time))
                .collect()
        };
        for (seq, user, time) in picks {
            let body = serde_json::json!({"events": [{"entity_type": USER,
                "entity_id": format!("u{user}"), "event_id": format!("ev{seq}"),
                "event_time": time,
                "features": {LIVE_N: seq, LIVE_S: data::live_label(seq as u64)}}]})
            .to_string();
            let reply = client.post("/v1/push", &body);
            self.shared.trace(format!(
                "replay {seq}: {}",
                reply
                    .as_ref()
                    .map_or_else(|e| e.clone(), |r| r.body.clone())
            ));
            match reply {
                Ok(r) if r.status == 200 => {
                    let duplicates = r.json().get("duplicates").and_then(|d| d.as_u64());
                    if duplicates != Some(1) {
                        self.violation(
                            "loss",
                            format!("event ev{seq} (acknowledged) is no longer known as a duplicate: {}", r.body),
                        );
                    }
                    self.shared.counters.replays.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    /// The ready loads of `group` in every possible state, with known version numbers,
    /// and the active load if it is known.
    fn ready_loads(&self, group: Group) -> (Vec<(u64, u64)>, Option<u64>) {
        let groups = lock(&self.shared.groups);
        let Some(model) = groups.get(&group) else {
            return (Vec::new(), None);
        };
        let mut common: Option<BTreeSet<u64>> = None;
        for state in &model.candidates {
            common = Some(match common {
                None => state.loads.clone(),
                Some(c) => c.intersection(&state.loads).copied().collect(),
            });
        }
        let ready = common
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| Some((l, *model.version_of.get(&l)?)))
            .collect();
        (ready, model.known().and_then(|s| s.active))
    }

    fn send(&self, client: &Client, path: &str, body: &str) -> Answer {
        match client.post(path, body) {
            Ok(r) if r.status == 200 => Answer::Ok(r.json()),
            Ok(r) if r.status == 503 && r.error().starts_with("overloaded") => {
                Answer::Lost { shed: true }
            }
            Ok(r) if r.status >= 500 => Answer::Failed(r.status, r.error()),
            Ok(r) => Answer::Refused(r.status, r.error()),
            Err(_) => Answer::Lost { shed: false },
        }
    }

    /// One random operation: a load, an activation, a rollback, a drop, or a pause.
    fn admin_op(&mut self, client: &Client, killer: &Killer, rng: &mut ChaCha8Rng) -> Result<()> {
        let group = Group::ALL[rng.random_range(0..Group::ALL.len())];
        match rng.random_range(0..100) {
            0..40 => {
                self.load(client, killer, rng, group, None)?;
            }
            40..62 => self.activate(client, killer, rng, group),
            62..75 => self.rollback(client, killer, group),
            75..85 => self.drop_versions(client, killer, group, rng.random_range(1..=3)),
            _ => std::thread::sleep(Duration::from_millis(rng.random_range(5..40))),
        }
        Ok(())
    }

    fn with_model<T>(&self, group: Group, f: impl FnOnce(&mut GroupModel) -> T) -> T {
        let mut groups = lock(&self.shared.groups);
        f(groups.entry(group).or_default())
    }

    fn apply(
        &self,
        group: Group,
        certainty: Certainty,
        what: &str,
        op: impl Fn(&mut crate::model::GroupState) -> bool,
    ) {
        let possible = self.with_model(group, |m| m.apply(certainty, op));
        if self.with_model(group, |m| m.overflowed) {
            self.violation(
                "harness",
                format!(
                    "{}: the model lost track (over {} possible states); a limit of the test, not of the server",
                    group.name(),
                    crate::model::MAX_CANDIDATES
                ),
            );
        }
        let states = self.with_model(group, |m| m.candidates.len());
        self.shared.trace(format!(
            "{} {what}: {certainty:?}, {states} possible states",
            group.name()
        ));
        if !possible {
            let candidates = self.with_model(group, |m| {
                format!("{:?}", m.candidates.iter().take(4).collect::<Vec<_>>())
            });
            self.violation(
                "state",
                format!(
                    "{}: {what} was acknowledged, but no possible state allows it ({candidates})",
                    group.name()
                ),
            );
        }
    }

    /// After an acknowledged operation: the listing (narrowing the model unless this
    /// life saw a server error) and, when the active version changed, a full read.
    fn after_ack(&mut self, client: &Client, killer: &Killer, group: Group, activated: bool) {
        if killer.killed() {
            return;
        }
        let narrow = !self.uncertain_in_life;
        self.check_listing(client, group, narrow, false);
        if activated && !killer.killed() {
            self.check_whole(client);
        }
    }

    /// Loads a new input into `group` (`good`: never a deliberately bad one); returns
    /// whether it was acknowledged.
    fn load(
        &mut self,
        client: &Client,
        killer: &Killer,
        rng: &mut ChaCha8Rng,
        group: Group,
        force_activate: Option<bool>,
    ) -> Result<bool> {
        let load = self.next_load;
        self.next_load += 1;
        let mut input = LoadInput::generate(group, load, rng);
        if self.fault_mode {
            input.bad = false;
        }
        let path = self.inputs.join(input.file_name());
        input.write(&path)?;
        let activate = force_activate.unwrap_or_else(|| rng.random_bool(0.75));
        self.with_model(group, |m| m.inputs.insert(load, input.clone()));
        let body = serde_json::json!({"input": path, "activate": activate}).to_string();
        killer.notify(Event::Load);
        let started = Instant::now();
        let answer = self.send(client, &format!("/v1/groups/{}/loads", group.name()), &body);
        let _ = std::fs::remove_file(&path);
        let killed = killer.killed();
        let mut acked = false;
        match answer {
            Answer::Ok(record) => {
                acked = true;
                self.loads.acked += 1;
                if activate {
                    self.loads_activated += 1;
                }
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                self.load_ms = 0.8 * self.load_ms + 0.2 * ms;
                if input.bad {
                    self.violation(
                        "partial",
                        format!("load {load}: a bad input was loaded: {record}"),
                    );
                }
                let version = record.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
                if let Err(e) = self.with_model(group, |m| m.learn(version, load)) {
                    self.violation("state", format!("{}: {e}", group.name()));
                }
                let entities = record.get("entities").and_then(|v| v.as_u64());
                let stored = record.get("values_stored").and_then(|v| v.as_u64());
                if entities != Some(input.entities.len() as u64)
                    || stored != Some(input.stored_values())
                {
                    self.violation(
                        "partial",
                        format!(
                            "load {load}: recorded {entities:?} entities and {stored:?} values, the input has {} and {}",
                            input.entities.len(),
                            input.stored_values()
                        ),
                    );
                }
                self.apply(
                    group,
                    Certainty::Acked,
                    &format!("load {load} v{version} activate={activate}"),
                    |s| {
                        s.load(load, activate, KEEP, false);
                        true
                    },
                );
                // Dropping old versions after a load is logged, not answered, if it fails.
                let drop = if self.fault_mode {
                    Certainty::Uncertain
                } else {
                    Certainty::Acked
                };
                self.apply(group, drop, "the drop after a load", |s| {
                    s.drop_beyond(KEEP);
                    true
                });
                self.after_ack(client, killer, group, activate);
            }
            Answer::Refused(status, message) => {
                self.loads.refused += 1;
                if !input.bad {
                    self.violation(
                        "state",
                        format!("load {load}: a good input was refused ({status}): {message}"),
                    );
                } else if status != 400 || !message.contains("row") {
                    self.violation("unclear", format!("load {load}: a bad input was refused without naming the row ({status}): {message}"));
                } else {
                    self.bad_refused += 1;
                }
            }
            Answer::Failed(status, message) => {
                self.loads.failed += 1;
                self.uncertain_in_life = true;
                self.shared.judge_failure("a load", status, &message);
                if !self.fault_mode {
                    self.violation(
                        "state",
                        format!("load {load} failed without a fault ({status}): {message}"),
                    );
                }
                self.uncertain_load(group, load, activate);
            }
            Answer::Lost { shed } => {
                if killed {
                    self.loads.interrupted += 1;
                } else if !shed {
                    self.violation(
                        "state",
                        format!("load {load}: no answer, and the server was not killed"),
                    );
                }
                self.uncertain_load(group, load, activate);
            }
        }
        Ok(acked)
    }

    fn uncertain_load(&self, group: Group, load: u64, activate: bool) {
        self.apply(
            group,
            Certainty::Uncertain,
            &format!("load {load} activate={activate}"),
            |s| {
                s.load(load, activate, KEEP, false);
                true
            },
        );
        self.apply(group, Certainty::Uncertain, "the drop after a load", |s| {
            s.drop_beyond(KEEP);
            true
        });
    }

    fn activate(&mut self, client: &Client, killer: &Killer, rng: &mut ChaCha8Rng, group: Group) {
        let (ready, active) = self.ready_loads(group);
        let others: Vec<(u64, u64)> = ready
            .iter()
            .copied()
            .filter(|(l, _)| Some(*l) != active)
            .collect();
        let pool = if others.is_empty() || rng.random_bool(0.1) {
            &ready
        } else {
            &others
        };
        if pool.is_empty() {
            return;
        }
        let (load, version) = pool[rng.random_range(0..pool.len())];
        killer.notify(Event::Admin);
        let path = format!("/v1/groups/{}/versions/{version}/activate", group.name());
        match self.send(client, &path, "") {
            Answer::Ok(_) => {
                self.activations.acked += 1;
                self.apply(
                    group,
                    Certainty::Acked,
                    &format!("activate v{version} (load {load})"),
                    |s| s.activate(load),
                );
                self.after_ack(client, killer, group, true);
            }
            Answer::Refused(status, message) => {
                self.activations.refused += 1;
                self.violation(
                    "loss",
                    format!("{} v{version} (load {load}) is ready in every possible state, but activating it answered {status}: {message}", group.name()),
                );
            }
            Answer::Failed(status, message) => {
                self.activations.failed += 1;
                self.failed_admin(group, "an activation", status, &message);
                self.apply(
                    group,
                    Certainty::Uncertain,
                    &format!("activate v{version} (load {load})"),
                    |s| s.activate(load),
                );
            }
            Answer::Lost { shed } => {
                self.lost_admin(killer, shed, "an activation");
                self.activations.interrupted += 1;
                self.apply(
                    group,
                    Certainty::Uncertain,
                    &format!("activate v{version} (load {load})"),
                    |s| s.activate(load),
                );
            }
        }
    }

    fn failed_admin(&mut self, group: Group, what: &str, status: u16, message: &str) {
        self.uncertain_in_life = true;
        self.shared.judge_failure(what, status, message);
        if !self.fault_mode {
            self.violation(
                "state",
                format!(
                    "{}: {what} failed without a fault ({status}): {message}",
                    group.name()
                ),
            );
        }
    }

    fn lost_admin(&self, killer: &Killer, shed: bool, what: &str) {
        if !killer.killed() && !shed {
            self.violation(
                "state",
                format!("{what}: no answer, and the server was not killed"),
            );
        }
    }

    fn rollback(&mut self, client: &Client, killer: &Killer, group: Group) {
        killer.notify(Event::Admin);
        match self.send(client, &format!("/v1/groups/{}/rollback", group.name()), "") {
            Answer::Ok(reply) => {
                self.rollbacks.acked += 1;
                let version = reply
                    .get("active_version")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                let Some(load) = self.with_model(group, |m| m.load_of.get(&version).copied())
                else {
                    self.violation(
                        "phantom",
                        format!("{}: rolled back to unknown version {version}", group.name()),
                    );
                    return;
                };
                self.apply(
                    group,
                    Certainty::Acked,
                    &format!("rollback to v{version} (load {load})"),
                    |s| s.rollback() == Some(load),
                );
                self.after_ack(client, killer, group, true);
            }
            Answer::Refused(status, message) => {
                self.rollbacks.refused += 1;
                let ok = (status == 409 && message.contains("previous")) || status == 404;
                if !ok {
                    self.violation(
                        "state",
                        format!("{}: rollback answered {status}: {message}", group.name()),
                    );
                }
                self.apply(group, Certainty::Acked, "a refused rollback", |s| {
                    s.rollback_target().is_none()
                });
            }
            Answer::Failed(status, message) => {
                self.rollbacks.failed += 1;
                self.failed_admin(group, "a rollback", status, &message);
                self.apply(group, Certainty::Uncertain, "a rollback", |s| {
                    s.rollback().is_some()
                });
            }
            Answer::Lost { shed } => {
                self.rollbacks.interrupted += 1;
                self.lost_admin(killer, shed, "a rollback");
                self.apply(group, Certainty::Uncertain, "a rollback", |s| {
                    s.rollback().is_some()
                });
            }
        }
    }

    fn drop_versions(&mut self, client: &Client, killer: &Killer, group: Group, keep: usize) {
        killer.notify(Event::Admin);
        let path = format!("/v1/groups/{}/drop-old-versions?keep={keep}", group.name());
        match self.send(client, &path, "") {
            Answer::Ok(reply) => {
                self.drops.acked += 1;
                let versions: Vec<u64> = reply
                    .get("dropped")
                    .and_then(|d| d.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_u64())
                    .collect();
                let loads: Option<BTreeSet<u64>> = self.with_model(group, |m| {
                    versions.iter().map(|v| m.load_of.get(v).copied()).collect()
                });
                let Some(loads) = loads else {
                    self.violation(
                        "phantom",
                        format!("{}: dropped unknown versions {versions:?}", group.name()),
                    );
                    return;
                };
                self.apply(
                    group,
                    Certainty::Acked,
                    &format!("drop keep={keep}: {versions:?}"),
                    |s| s.drop_beyond(keep).into_iter().collect::<BTreeSet<_>>() == loads,
                );
                self.after_ack(client, killer, group, false);
            }
            Answer::Refused(status, message) => {
                self.drops.refused += 1;
                let never_loaded = self.with_model(group, |m| m.inputs.is_empty());
                if !(status == 404 && never_loaded) {
                    self.violation(
                        "state",
                        format!("{}: drop answered {status}: {message}", group.name()),
                    );
                }
            }
            Answer::Failed(status, message) => {
                self.drops.failed += 1;
                self.failed_admin(group, "a drop", status, &message);
                self.apply(
                    group,
                    Certainty::Uncertain,
                    &format!("drop keep={keep}"),
                    |s| {
                        s.drop_beyond(keep);
                        true
                    },
                );
            }
            Answer::Lost { shed } => {
                self.drops.interrupted += 1;
                self.lost_admin(killer, shed, "a drop");
                self.apply(
                    group,
                    Certainty::Uncertain,
                    &format!("drop keep={keep}"),
                    |s| {
                        s.drop_beyond(keep);
                        true
                    },
                );
            }
        }
    }

    /// One fault episode: arm, run the scenario's operations, check that they failed
    /// clearly, disarm (or kill while armed), and see whether the server recovers by
    /// itself. True when it did.
    fn fault_episode(
        &mut self,
        scenario: Scenario,
        client: &Client,
        killer: &Killer,
        rng: &mut ChaCha8Rng,
    ) -> Result<bool> {
        let injected_before = self.shim()?.injected()?;
        let errno = if scenario == Scenario::Countdown && rng.random_bool(0.5) {
            faults::EIO
        } else {
            scenario.fault(0, 0).errno
        };
        let mut fault = scenario.fault(rng.random_range(0..400), rng.random_range(1..=3));
        fault.errno = errno;
        let group = Group::ALL[rng.random_range(0..Group::ALL.len())];
        // An admin scenario needs a manifest-writing operation to fail: two versions.
        if scenario.target() == Target::Admin && self.ready_loads(group).0.len() < 2 {
            self.load(client, killer, rng, group, Some(false))?;
            self.load(client, killer, rng, group, Some(false))?;
        }
        let failed_before = self.shared.fault_errors.load(Ordering::Relaxed);
        self.fault_mode = true;
        *lock(&self.shared.armed) = Some(ArmedFault {
            text: faults::describe(errno),
        });
        // Only the operation under test writes while a database fault is armed.
        let quiet = scenario.fails_the_database();
        self.shared.paused.store(quiet, Ordering::SeqCst);
        if quiet {
            std::thread::sleep(Duration::from_millis(30));
        }
        self.shim()?.arm(&fault)?;
        match scenario.target() {
            Target::Push => std::thread::sleep(Duration::from_millis(rng.random_range(200..600))),
            Target::Admin => {
                let (ready, active) = self.ready_loads(group);
                if ready.iter().any(|(l, _)| Some(*l) != active) {
                    self.activate(client, killer, rng, group);
                } else {
                    self.drop_versions(client, killer, group, 1);
                }
            }
            Target::Load => {
                if self.load(client, killer, rng, group, None)? {
                    self.violation(
                        "state",
                        format!(
                            "a load succeeded while `{}` failed every write",
                            scenario.name()
                        ),
                    );
                }
            }
            Target::Mixed => {
                // Operations until the first one fails (each failed one doubles the
                // states the model keeps), then pushes and reads only.
                let until = Instant::now() + Duration::from_millis(rng.random_range(300..1200));
                while Instant::now() < until && !self.uncertain_in_life {
                    self.admin_op(client, killer, rng)?;
                }
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
            }
        }
        if quiet {
            self.check_not_ready(client, killer, scenario, faults::describe(errno));
            self.shared.paused.store(false, Ordering::SeqCst);
        }
        let stats = self.faults.entry(scenario).or_default().clone();
        let before_recovered = stats.recovered;
        let mut stats = FaultStats {
            episodes: stats.episodes + 1,
            ..stats
        };
        // Sometimes the server dies while the disk still fails.
        if rng.random_bool(0.2) {
            killer.kill_now();
            self.shim()?.disarm()?;
            stats.killed_while_failing += 1;
            // Half of those restart once while the disk still fails.
            if rng.random_bool(0.5) {
                self.open_on_failing_disk = Some((scenario, fault.clone()));
            }
        } else {
            self.shim()?.disarm()?;
            let started = Instant::now();
            if self.recovers(client, killer, rng, group, scenario)? {
                stats.recovered += 1;
                stats.slowest_recovery = stats.slowest_recovery.max(started.elapsed());
            } else {
                stats.restart_needed += 1;
            }
        }
        let shim = self.shim()?;
        stats.injected += shim.injected()? - injected_before;
        stats.failed_requests += self.shared.fault_errors.load(Ordering::Relaxed) - failed_before;
        let recovered = stats.recovered > before_recovered;
        self.faults.insert(scenario, stats);
        Ok(recovered)
    }

    /// Starts the server while `fault` still fails: it must either open or exit with an
    /// error naming the fault; either way the next start (fault cleared) needs no
    /// repair, which the life that follows checks.
    fn open_while_failing(
        &mut self,
        scenario: Scenario,
        fault: &faults::Fault,
        life: u64,
    ) -> Result<()> {
        self.shim()?.arm(fault)?;
        let text = faults::describe(fault.errno);
        let banner = format!("life {life}: open while `{}` still fails", scenario.name());
        self.shared.trace(&banner);
        let log_start = std::fs::metadata(&self.launch.log).map_or(0, |m| m.len());
        let mut server = Server::spawn(&self.launch, &banner)?;
        let opened = server.wait_listening(LISTEN_TIMEOUT).is_ok();
        server.kill();
        drop(server);
        self.shim()?.disarm()?;
        let stats = self.faults.entry(scenario).or_default();
        if opened {
            stats.opened_anyway += 1;
            *self
                .kill_points
                .entry("right after opening on a failing disk")
                .or_default() += 1;
            return Ok(());
        }
        stats.open_failed_clearly += 1;
        let log = std::fs::read(&self.launch.log).unwrap_or_default();
        let tail = String::from_utf8_lossy(
            log.get(usize::try_from(log_start).unwrap_or(0)..)
                .unwrap_or(&[]),
        )
        .into_owned();
        if !tail.contains(text) {
            stats.open_failed_clearly -= 1;
            self.violation(
                "unclear",
                format!(
                    "the store failed to open while `{text}` failed, without saying so: {tail}"
                ),
            );
        }
        Ok(())
    }

    /// After an operation failed because the database could not write: `/readyz` must
    /// answer 503 naming the error (within a second), not `ok`, although no push
    /// failed yet.
    fn check_not_ready(&self, client: &Client, killer: &Killer, scenario: Scenario, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut last = String::new();
        while Instant::now() < deadline && !killer.killed() {
            match client.get("/readyz") {
                Ok(r) if r.status == 503 && r.body.contains(text) => return,
                Ok(r) => last = format!("{} {}", r.status, r.body.trim()),
                Err(_) => return,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !killer.killed() {
            self.violation(
                "unclear",
                format!(
                    "`{}`: an operation failed with `{text}`, the database cannot write, but /readyz answers {last}",
                    scenario.name()
                ),
            );
        }
    }

    /// After a fault was cleared: whether pushes, loads and version changes work again
    /// within `--recovery-wait`, by themselves.
    fn recovers(
        &mut self,
        client: &Client,
        killer: &Killer,
        rng: &mut ChaCha8Rng,
        group: Group,
        scenario: Scenario,
    ) -> Result<bool> {
        let deadline = Instant::now() + self.args.recovery_wait;
        let mut pushed = false;
        let mut loaded = scenario.target() == Target::Push;
        while Instant::now() < deadline && !killer.killed() {
            let ready = client.get("/readyz").is_ok_and(|r| r.status == 200);
            if ready && !pushed {
                let user = rng.random_range(0..USERS);
                let time = self.shared.time_base - rng.random_range(0..3_600_000);
                let seq = lock(&self.shared.stream).add(user, time);
                if let Some(seq) = seq {
                    let body = serde_json::json!({"events": [{"entity_type": USER,
                        "entity_id": format!("u{user}"), "event_id": format!("ev{seq}"),
                        "event_time": time,
                        "features": {LIVE_N: seq, LIVE_S: data::live_label(seq as u64)}}]})
                    .to_string();
                    pushed = workload::send_push(&self.shared, client, &body, &[seq])
                        == SendOutcome::Acked;
                }
            }
            if ready && pushed && !loaded {
                loaded = self.load(client, killer, rng, group, Some(true))?;
            }
            if ready && pushed && loaded {
                *lock(&self.shared.armed) = None;
                self.fault_mode = false;
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(false)
    }

    /// Prints the run's figures.
    pub fn report(&self) {
        let c = &self.shared.counters;
        let elapsed = self.started.elapsed();
        let violations = lock(&self.shared.violations);
        println!(
            "crashtest: seed {}, {} kills in {} ({:.2} kills/s), {} violations",
            self.seed,
            self.kills(),
            humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
            self.kills() as f64 / elapsed.as_secs_f64().max(1e-9),
            violations.len()
        );
        for (point, n) in &self.kill_points {
            println!("  killed {point}: {n}");
        }
        println!(
            "  loads: {}; {} activated by the load, {} bad inputs refused",
            self.loads.line(),
            self.loads_activated,
            self.bad_refused
        );
        println!("  activations: {}", self.activations.line());
        println!("  rollbacks: {}", self.rollbacks.line());
        println!("  drops: {}", self.drops.line());
        println!(
            "  pushes: {} acknowledged ({} events), {} refused, {} unanswered or failed; {} acknowledged event ids replayed as duplicates",
            c.pushes_acked.load(Ordering::Relaxed),
            c.events_acked.load(Ordering::Relaxed),
            c.pushes_refused.load(Ordering::Relaxed),
            c.pushes_uncertain.load(Ordering::Relaxed),
            c.replays.load(Ordering::Relaxed)
        );
        println!(
            "  reads checked: {} entity answers, {} full reads of every entity",
            c.reads_checked.load(Ordering::Relaxed),
            self.whole_checks
        );
        let episodes: u64 = self.faults.values().map(|f| f.episodes).sum();
        println!("  fault episodes: {episodes}");
        for (scenario, f) in &self.faults {
            let reopened = if f.killed_while_failing > 0 {
                format!(
                    " (then started while it still failed: the open failed naming the error {}, opened anyway {})",
                    f.open_failed_clearly, f.opened_anyway
                )
            } else {
                String::new()
            };
            println!(
                "    {}: {} episodes, {} calls failed, {} requests failed; recovered by itself {} (slowest {:.1}s), restart needed {}, killed while failing {}{reopened}",
                scenario.name(),
                f.episodes,
                f.injected,
                f.failed_requests,
                f.recovered,
                f.slowest_recovery.as_secs_f64(),
                f.restart_needed,
                f.killed_while_failing,
            );
        }
        for v in violations.iter().take(20) {
            println!("  VIOLATION [{}] life {}: {}", v.kind, v.life, v.detail);
        }
        let _ = &self.work;
    }
}

/// Waits until `/readyz` answers 200.
fn wait_ready(client: &Client, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match client.get("/readyz") {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => last = format!("{}: {}", r.status, r.body),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last)
}
