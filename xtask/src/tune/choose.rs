//! `setup --tune`, stage 3: choose. Pure, on a recorded [`Session`]: an arm replaces the
//! reference (arm 0, the current choice) only when it is faster by more than the noise in pp or
//! tg and not slower by more than the noise in the other. Ratios are of medians (one disturbed
//! round out of three does not decide); noise is the round-to-round spread ((max - min) / median)
//! of the reference or of the arm, whichever is larger, and never under [`MIN_NOISE`]. Among the
//! arms that qualify, the best geometric mean of the pp and tg ratios wins. Fewer than two rounds
//! show no noise: then nothing replaces the reference.

use super::measure::{ArmSamples, Session};
use serde::{Deserialize, Serialize};

/// The smallest noise assumed (1%): two or three rounds can agree by chance.
pub const MIN_NOISE: f64 = 0.01;

/// Median and relative spread ((max - min) / median) of samples.
pub fn median_spread(s: &[f64]) -> (f64, f64) {
    if s.is_empty() {
        return (0.0, 0.0);
    }
    let mut v = s.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let spread = if median > 0.0 && n > 1 {
        (v[n - 1] - v[0]) / median
    } else {
        0.0
    };
    (median, spread)
}

/// One arm against the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub arm: String,
    pub pp_median: f64,
    pub tg_median: f64,
    pub pp_spread: f64,
    pub tg_spread: f64,
    /// arm median / reference median (1.0 for the reference itself).
    pub pp_ratio: f64,
    pub tg_ratio: f64,
    /// The noise this arm had to beat, per test.
    pub pp_noise: f64,
    pub tg_noise: f64,
    /// Faster than the reference by more than the noise (never for the reference).
    pub beats_reference: bool,
    pub why: String,
}

/// A stage's outcome: every arm's verdict and the winner (the reference when none qualifies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    pub session: Session,
    pub reference: String,
    pub winner: String,
    pub verdicts: Vec<Verdict>,
}

impl StageResult {
    pub fn winner_index(&self) -> usize {
        self.session
            .arms
            .iter()
            .position(|a| a.name == self.winner)
            .unwrap_or(0)
    }
    pub fn changed(&self) -> bool {
        self.winner != self.reference
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn verdict(reference: &ArmSamples, arm: &ArmSamples, is_reference: bool, rounds: u32) -> Verdict {
    let (rp, rps) = median_spread(&reference.pp);
    let (rt, rts) = median_spread(&reference.tg);
    let (pp, pps) = median_spread(&arm.pp);
    let (tg, tgs) = median_spread(&arm.tg);
    let ratio = |a: f64, r: f64| if r > 0.0 { a / r } else { f64::NAN };
    let (pp_ratio, tg_ratio) = (ratio(pp, rp), ratio(tg, rt));
    let pp_noise = rps.max(pps).max(MIN_NOISE);
    let tg_noise = rts.max(tgs).max(MIN_NOISE);
    let gain = |r: f64, n: f64| r - 1.0 > n;
    let loss = |r: f64, n: f64| 1.0 - r > n || r.is_nan();
    let (beats, why) = if is_reference {
        (false, "reference (the current choice)".to_string())
    } else if rounds < 2 {
        (false, "fewer than two rounds: the noise is unknown".into())
    } else if loss(pp_ratio, pp_noise) || loss(tg_ratio, tg_noise) {
        (
            false,
            format!(
                "slower by more than the noise (pp {pp_ratio:.2}x, noise {}; tg {tg_ratio:.2}x, noise {})",
                pct(pp_noise),
                pct(tg_noise)
            ),
        )
    } else if gain(pp_ratio, pp_noise) || gain(tg_ratio, tg_noise) {
        (
            true,
            format!(
                "faster by more than the noise (pp {pp_ratio:.2}x, noise {}; tg {tg_ratio:.2}x, noise {})",
                pct(pp_noise),
                pct(tg_noise)
            ),
        )
    } else {
        (
            false,
            format!(
                "within the noise (pp {pp_ratio:.2}x, noise {}; tg {tg_ratio:.2}x, noise {})",
                pct(pp_noise),
                pct(tg_noise)
            ),
        )
    };
    Verdict {
        arm: arm.name.clone(),
        pp_median: pp,
        tg_median: tg,
        pp_spread: pps,
        tg_spread: tgs,
        pp_ratio,
        tg_ratio,
        pp_noise,
        tg_noise,
        beats_reference: beats,
        why,
    }
}

/// The rule, applied to a session whose arm 0 is the reference.
pub fn choose(session: Session) -> StageResult {
    let reference = &session.arms[0];
    let verdicts: Vec<Verdict> = session
        .arms
        .iter()
        .enumerate()
        .map(|(i, a)| verdict(reference, a, i == 0, session.rounds))
        .collect();
    let score = |v: &Verdict| (v.pp_ratio * v.tg_ratio).sqrt();
    let winner = verdicts
        .iter()
        .filter(|v| v.beats_reference)
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .map_or(reference.name.clone(), |v| v.arm.clone());
    StageResult {
        reference: reference.name.clone(),
        winner,
        verdicts,
        session,
    }
}

/// The evidence line of a stage: `threads 1: measured 1.31x tg, 1.02x pp over threads 2 (noise
/// tg 2.0%, pp 1.5%; 3 rounds)`, or why the reference stayed.
pub fn evidence(r: &StageResult) -> String {
    let rounds = r.session.rounds;
    let w = &r.verdicts[r.winner_index()];
    if r.changed() {
        format!(
            "{}: measured {:.2}x tg, {:.2}x pp over {} (noise tg {}, pp {}; {rounds} rounds)",
            r.winner,
            w.tg_ratio,
            w.pp_ratio,
            r.reference,
            pct(w.tg_noise),
            pct(w.pp_noise)
        )
    } else {
        let others: Vec<String> = r
            .verdicts
            .iter()
            .skip(1)
            .map(|v| format!("{} {:.2}x tg, {:.2}x pp", v.arm, v.tg_ratio, v.pp_ratio))
            .collect();
        format!(
            "{}: kept, nothing beat it by more than the noise ({}; {rounds} rounds)",
            r.reference,
            if others.is_empty() {
                "no alternative measured".to_string()
            } else {
                others.join("; ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::candidates::Knobs;

    fn arm(name: &str, pp: &[f64], tg: &[f64]) -> ArmSamples {
        ArmSamples {
            name: name.into(),
            build: "default".into(),
            knobs: Knobs {
                threads: 2,
                flash_attn: "auto".into(),
                ubatch: None,
            },
            pp: pp.to_vec(),
            tg: tg.to_vec(),
        }
    }

    fn session(arms: Vec<ArmSamples>) -> Session {
        Session {
            stage: "threads".into(),
            rounds: arms[0].pp.len() as u32,
            arms,
            stopped: None,
            seconds: 1.0,
        }
    }

    #[test]
    fn a_candidate_within_the_noise_of_the_default_is_not_chosen() {
        // The default's own rounds spread 4% in tg; the candidate is 2% faster: noise.
        let r = choose(session(vec![
            arm("threads 2", &[100.0, 101.0, 100.5], &[50.0, 52.0, 51.0]),
            arm("threads 1", &[100.2, 100.8, 101.0], &[52.0, 51.9, 52.1]),
        ]));
        assert_eq!(r.winner, "threads 2");
        assert!(!r.verdicts[1].beats_reference);
        assert!(
            r.verdicts[1].why.starts_with("within the noise"),
            "{}",
            r.verdicts[1].why
        );
        assert!(
            evidence(&r).starts_with("threads 2: kept"),
            "{}",
            evidence(&r)
        );
    }

    #[test]
    fn a_candidate_that_clearly_wins_is_chosen_and_the_best_of_several_wins() {
        let r = choose(session(vec![
            arm("threads 8", &[100.0, 101.0, 99.0], &[40.0, 40.5, 39.5]),
            arm("threads 6", &[101.0, 100.0, 100.5], &[52.0, 52.5, 51.5]),
            arm("threads 4", &[90.0, 91.0, 90.5], &[55.0, 55.5, 54.5]),
            arm("threads 16", &[110.0, 111.0, 110.5], &[40.1, 40.2, 40.0]),
        ]));
        // threads 4 is faster in tg but slower in pp by more than the noise: not eligible.
        assert!(!r.verdicts[2].beats_reference, "{}", r.verdicts[2].why);
        assert!(r.verdicts[1].beats_reference && r.verdicts[3].beats_reference);
        // 6: sqrt(1.005 * 1.3) = 1.143; 16: sqrt(1.10 * 1.0025) = 1.05.
        assert_eq!(r.winner, "threads 6");
        let e = evidence(&r);
        assert!(
            e.starts_with("threads 6: measured 1.30x tg, 1.00x pp over threads 8"),
            "{e}"
        );
    }

    #[test]
    fn a_noisy_candidate_must_beat_its_own_spread_too() {
        // 5% faster on average in both tests, but its own rounds spread 19%.
        let r = choose(session(vec![
            arm("a", &[100.0, 100.0], &[50.0, 50.0]),
            arm("b", &[95.0, 115.0], &[47.5, 57.5]),
        ]));
        assert_eq!(r.winner, "a", "{:?}", r.verdicts[1]);
    }

    #[test]
    fn one_round_shows_no_noise_so_the_reference_stays() {
        let r = choose(session(vec![
            arm("a", &[100.0], &[50.0]),
            arm("b", &[200.0], &[99.0]),
        ]));
        assert_eq!(r.winner, "a");
        assert!(r.verdicts[1].why.contains("fewer than two rounds"));
    }
}
