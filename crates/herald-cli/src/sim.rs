//! The demo's simulated model and network: latencies drawn from heavy-tailed
//! distributions like those of real LLM APIs (a lognormal time to first token with a
//! long tail, steady-ish gaps between tokens), and deterministic text from a seed.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

/// Labels the classifier chooses from.
pub(crate) const LABELS: &[&str] = &["invoice", "contract", "report", "email", "memo"];

const SUBJECTS: &[&str] = &[
    "quarterly revenue",
    "supplier terms",
    "data retention",
    "office move",
    "hiring plan",
    "incident review",
    "pricing change",
    "security audit",
    "travel policy",
    "roadmap",
];
const FINDINGS: &[&str] = &[
    "late delivery on two supplier contracts",
    "unclear ownership of open action items",
    "renewal costs up 12% with no budget owner",
    "a data retention clause that conflicts with policy",
    "an unsigned amendment to the master agreement",
    "invoices paid twice in March",
    "a security finding still open after 90 days",
    "travel spend above plan in one team",
];

/// One source of simulated latency and text; each worker thread has its own.
pub(crate) struct Sim {
    rng: StdRng,
    speed: f64,
}

impl Sim {
    pub(crate) fn new(seed: u64, speed: f64) -> Sim {
        Sim {
            rng: StdRng::seed_from_u64(seed),
            speed,
        }
    }

    /// Sleeps `secs` of simulated time.
    pub(crate) fn sleep(&self, secs: f64) {
        std::thread::sleep(Duration::from_secs_f64((secs / self.speed).max(0.0)));
    }

    /// Draws from a lognormal with the given median (seconds) and spread, capped.
    fn lognormal(&mut self, median: f64, sigma: f64, cap: f64) -> f64 {
        let dist = LogNormal::new(median.ln(), sigma).expect("finite parameters");
        dist.sample(&mut self.rng).min(cap)
    }

    /// Waits as long as downloading one document takes.
    pub(crate) fn wait_fetch(&mut self) {
        let secs = self.lognormal(0.08, 0.7, 3.0);
        self.sleep(secs);
    }

    /// Waits for a model's first token: most calls are quick, a few take seconds.
    pub(crate) fn wait_first_token(&mut self) {
        let secs = self.lognormal(0.3, 0.9, 8.0);
        self.sleep(secs);
    }

    /// Waits between two streamed tokens.
    pub(crate) fn wait_token(&mut self) {
        let secs = self.lognormal(0.025, 0.4, 0.5);
        self.sleep(secs);
    }

    /// Whether a transient failure (a retried 503) happens, with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// The classifier's label for a document.
    pub(crate) fn label(&mut self) -> &'static str {
        LABELS.choose(&mut self.rng).expect("labels are not empty")
    }

    /// A sentence of `n` findings, as a model might write it.
    pub(crate) fn findings(&mut self, n: usize) -> String {
        let picked: Vec<&str> = FINDINGS
            .choose_multiple(&mut self.rng, n)
            .copied()
            .collect();
        picked.join("; ")
    }

    /// A document's title.
    pub(crate) fn title(&mut self, doc: u64) -> String {
        let subject = SUBJECTS
            .choose(&mut self.rng)
            .expect("subjects are not empty");
        format!("doc-{doc:03}: {subject}")
    }
}
