//! One measurement: start the master, join it with the fake workers, follow the run
//! to the master's exit under a hard deadline, and gather what the summary prints.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::cli::Args;
use crate::master::{self, Master};
use crate::procfs::{self, Samples};
use crate::reports::{self, Template};
use crate::worker::{self, Shared, Spec};

/// Everything observed in one run, for the summary.
pub(crate) struct Observed {
    pub connections: usize,
    pub launched: Instant,
    /// When the master process ended, and how.
    pub master_exit: Option<(Instant, ExitStatus)>,
    /// First time the JSON report file was seen (polled every 10 ms).
    pub json_seen: Option<Instant>,
    pub json: PathBuf,
    pub dir: PathBuf,
    pub errors: Vec<String>,
    pub samples: Samples,
    pub shared: Arc<Shared>,
    pub templates: Arc<Vec<Template>>,
}

/// Runs the whole measurement; the master never outlives it.
pub(crate) async fn run(args: &Args) -> Result<Observed> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            std::env::temp_dir().join(format!("sim-workers-{}-{ms}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let templates = Arc::new(reports::build(
        args.templates as usize,
        args.endpoints as usize,
        args.active_percent,
        args.seed,
    ));
    let deadline = Instant::now() + args.hard_deadline();
    let mut master = Master::start(&args.barrage, &dir, (args.workers, args.endpoints), args.duration).await?;
    eprintln!(
        "master pid {} on 127.0.0.1:{}; scenario, log and report in {}",
        master.pid,
        master.port,
        dir.display()
    );
    let shared = Arc::new(Shared::default());
    let driven = tokio::time::timeout_at(deadline, drive(args, &mut master, templates.clone(), shared.clone())).await;
    match driven {
        Ok(Ok(mut observed)) => {
            observed.dir = dir;
            Ok(observed)
        }
        Ok(Err(e)) => {
            master.kill().await;
            Err(e.context(format!(
                "master log tail ({}):\n{}",
                master.log.display(),
                master::log_tail(&master.log, 15)
            )))
        }
        Err(_) => {
            master.kill().await;
            bail!(
                "hard deadline of {:?} reached: master killed. {} workers welcomed, {} finals acknowledged, {} reports sent; see {}",
                args.hard_deadline(),
                shared.welcomed.load(Ordering::Relaxed),
                shared.finals_acked.load(Ordering::Relaxed),
                shared.reports_sent.load(Ordering::Relaxed),
                master.log.display()
            )
        }
    }
}

async fn drive(
    args: &Args,
    master: &mut Master,
    templates: Arc<Vec<Template>>,
    shared: Arc<Shared>,
) -> Result<Observed> {
    master.wait_ready(Instant::now() + Duration::from_secs(30)).await?;
    let ticks = procfs::clock_ticks();
    let (stop_sampler, stop_rx) = oneshot::channel();
    let sampler = tokio::spawn(procfs::sample(master.pid, ticks, stop_rx));
    let channels = connect(&master.url(), args.workers.div_ceil(args.streams_per_connection)).await?;

    let launched = Instant::now();
    let mut workers = JoinSet::new();
    for index in 0..args.workers {
        let channel = channels[(index / args.streams_per_connection) as usize % channels.len()].clone();
        workers.spawn(worker::run(Spec {
            index,
            total: args.workers,
            channel,
            templates: templates.clone(),
            shared: shared.clone(),
        }));
    }

    // Borrowed apart from `master`, whose wait() holds it for the loop.
    let (json, pid) = (master.json.clone(), master.pid.to_string());
    let mut master_exit = None;
    let mut json_seen = None;
    let mut errors = Vec::new();
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    let mut last_reading = procfs::read(&pid, ticks).ok();
    while master_exit.is_none() || !workers.is_empty() {
        tokio::select! {
            status = master.wait(), if master_exit.is_none() => {
                let now = Instant::now();
                if json_seen.is_none() && json.exists() {
                    json_seen = Some(now);
                }
                master_exit = Some((now, status?));
            }
            Some(joined) = workers.join_next(), if !workers.is_empty() => match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("{e:#}")),
                Err(e) => errors.push(format!("worker task: {e}")),
            },
            _ = poll.tick(), if json_seen.is_none() => {
                if json.exists() {
                    json_seen = Some(Instant::now());
                }
            }
            _ = progress.tick() => {
                let reading = procfs::read(&pid, ticks).ok();
                print_progress(launched, &shared, last_reading.as_ref(), reading.as_ref());
                last_reading = reading.or(last_reading);
            }
        }
    }
    // The receiver only goes away if the sampler panicked, which its result reports.
    let _ = stop_sampler.send(());
    let samples = sampler.await.context("the /proc sampler task failed")?;
    Ok(Observed {
        connections: channels.len(),
        launched,
        master_exit,
        json_seen,
        json,
        dir: PathBuf::new(),
        errors,
        samples,
        shared,
        templates,
    })
}

/// `count` HTTP/2 connections to the master; the fake workers' streams share them.
async fn connect(url: &str, count: u32) -> Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .context("the master URL")?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(count as usize);
    for i in 0..count.max(1) {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connection {} of {count} to the master at {url}", i + 1))?;
        channels.push(channel);
    }
    Ok(channels)
}

fn print_progress(launched: Instant, shared: &Shared, before: Option<&procfs::Reading>, now: Option<&procfs::Reading>) {
    let cpu = match (before, now) {
        (Some(a), Some(b)) if b.at > a.at => {
            let pct = 100.0 * b.cpu.saturating_sub(a.cpu).as_secs_f64() / (b.at - a.at).as_secs_f64();
            format!("master CPU {pct:5.1} %, RSS {:6.1} MB", b.rss_bytes as f64 / 1e6)
        }
        _ => "master gone".to_string(),
    };
    eprintln!(
        "{:6.1}s  welcomed {:>5}  running {:>5}  reports sent {:>8} acked {:>8}  finals {:>5}  errors {}  |  {cpu}",
        launched.elapsed().as_secs_f64(),
        shared.welcomed.load(Ordering::Relaxed),
        shared.assigned.load(Ordering::Relaxed),
        shared.reports_sent.load(Ordering::Relaxed),
        shared.reports_acked.load(Ordering::Relaxed),
        shared.finals_acked.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed),
    );
}
