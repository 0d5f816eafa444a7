//! The server's CPU time and resident memory, read from `/proc/<pid>` (Linux), so a run can
//! report CPU per delivered message — far steadier on a shared machine than messages/s.
//! A cluster's nodes are summed: CPU per message is then the whole cluster's.

use std::path::PathBuf;

/// A snapshot of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// User + system CPU seconds so far.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

pub struct Probe {
    pids: Vec<u32>,
    ticks_per_second: f64,
}

impl Probe {
    /// Probes every process in `pids`; `None` when there is none.
    pub fn of(pids: &[u32]) -> anyhow::Result<Option<Probe>> {
        if pids.is_empty() {
            return Ok(None);
        }
        let ticks = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0);
        let probe = Probe { pids: pids.to_vec(), ticks_per_second: ticks };
        probe.sample()?;
        Ok(Some(probe))
    }

    /// The processes' CPU time and memory, summed.
    pub fn sample(&self) -> anyhow::Result<Sample> {
        let mut sum = Sample::default();
        for &pid in &self.pids {
            let one = self.sample_one(pid)?;
            sum.cpu_seconds += one.cpu_seconds;
            sum.rss_bytes += one.rss_bytes;
        }
        Ok(sum)
    }

    fn sample_one(&self, pid: u32) -> anyhow::Result<Sample> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let stat = std::fs::read_to_string(dir.join("stat"))
            .map_err(|e| anyhow::anyhow!("cannot read /proc/{pid}/stat (is --server-pid right?): {e}"))?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ")".
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let cpu_seconds = (ticks(11) + ticks(12)) / self.ticks_per_second;
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(Sample { cpu_seconds, rss_bytes: rss_kib * 1024 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let probe = Probe::of(&[std::process::id()]).expect("probe").expect("one pid");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let s = probe.sample().expect("sample");
        assert!(s.rss_bytes > 1024 * 1024, "{s:?}");
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn several_processes_are_summed_and_a_wrong_pid_is_named() {
        let me = std::process::id();
        let one = Probe::of(&[me]).expect("probe").expect("one pid").sample().expect("sample");
        let two = Probe::of(&[me, me]).expect("probe").expect("two pids").sample().expect("sample");
        // The same process twice: twice its memory (CPU moves between the two reads).
        let rss_ratio = two.rss_bytes as f64 / one.rss_bytes as f64;
        assert!((1.8..2.2).contains(&rss_ratio), "{one:?} {two:?}");
        assert!(Probe::of(&[]).expect("no pids").is_none());
        let err = Probe::of(&[me, u32::MAX]).err().expect("a pid that does not exist");
        assert!(err.to_string().contains("--server-pid"), "{err}");
    }
}
