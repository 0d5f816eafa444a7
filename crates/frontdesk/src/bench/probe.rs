//! The server's CPU time and resident memory, read from `/proc/<pid>` (Linux), so a run can
//! report CPU per delivered message — far steadier on a shared machine than messages/s.

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
    pid: u32,
    ticks_per_second: f64,
}

impl Probe {
    pub fn new(pid: u32) -> anyhow::Result<Probe> {
        let ticks = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0);
        let probe = Probe { pid, ticks_per_second: ticks };
        probe.sample()?;
        Ok(probe)
    }

    pub fn sample(&self) -> anyhow::Result<Sample> {
        let dir = PathBuf::from(format!("/proc/{}", self.pid));
        let stat = std::fs::read_to_string(dir.join("stat"))
            .map_err(|e| anyhow::anyhow!("cannot read /proc/{}/stat (is --server-pid right?): {e}", self.pid))?;
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
        let probe = Probe::new(std::process::id()).expect("probe");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let s = probe.sample().expect("sample");
        assert!(s.rss_bytes > 1024 * 1024, "{s:?}");
        assert!(s.cpu_seconds >= 0.0);
    }
}
