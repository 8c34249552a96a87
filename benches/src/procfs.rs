//! What the load benchmark reads from `/proc`: CPU time, peak RSS, children.
//!
//! Linux only. CPU time comes from `/proc/PID/stat` (`utime + stime`, in
//! clock ticks, which counts every thread the process ever had, live or
//! exited); peak RSS from `VmHWM` in `/proc/PID/status`, which the benchmark
//! resets at the start of each run by writing `5` to `/proc/PID/clear_refs`.

use std::fs;
use std::io;
use std::process::Command;

/// The fields of `/proc/PID/stat` the benchmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Parent process id.
    pub ppid: u32,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parse the text of `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so the fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    // Fields after the command: state(3) ppid(4) ... utime(14) stime(15).
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        cpu_ticks: utime + stime,
    })
}

/// `/proc/PID/stat` of a process (`"self"` works as a pid via [`stat_of`]).
pub fn stat(pid: u32) -> io::Result<Stat> {
    stat_of(&pid.to_string())
}

/// `/proc/<who>/stat`, where `who` is a pid or `self`.
pub fn stat_of(who: &str) -> io::Result<Stat> {
    let text = fs::read_to_string(format!("/proc/{who}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::other(format!("cannot parse /proc/{who}/stat")))
}

/// Clock ticks per second (`getconf CLK_TCK`; Linux's USER_HZ is 100).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// Parse a numeric field (e.g. `VmHWM`, in kB) out of `/proc/PID/status` text.
pub fn parse_status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Peak resident set size (`VmHWM`) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&text, "VmHWM")
        .ok_or_else(|| io::Error::other(format!("no VmHWM in /proc/{pid}/status")))
}

/// Reset a process's peak RSS to its current RSS (`echo 5 > clear_refs`).
/// Needs to own the process or be root; failure is reported, not fatal.
pub fn reset_peak_rss(pid: u32) -> io::Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// Busy CPU ticks of the whole machine, summed over CPUs, from the `cpu`
/// line of `/proc/stat` text: user + nice + system + irq + softirq (idle,
/// iowait and steal excluded; guest time is already inside user).
pub fn parse_system_busy(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?)
}

/// Busy CPU ticks of the whole machine (see [`parse_system_busy`]).
pub fn system_busy_ticks() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/stat")?;
    parse_system_busy(&text).ok_or_else(|| io::Error::other("cannot parse /proc/stat"))
}

/// Context switches (voluntary + involuntary) of every live thread of `pid`.
pub fn context_switches(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(text) = fs::read_to_string(task?.path().join("status")) else {
            continue; // the thread just exited
        };
        total += parse_status_count(&text, "voluntary_ctxt_switches").unwrap_or(0);
        total += parse_status_count(&text, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Ok(total)
}

fn parse_status_count(text: &str, field: &str) -> Option<u64> {
    parse_status_kib(text, field)
}

/// Every process whose command name (`/proc/PID/comm`) is `comm`, e.g. the
/// PostgreSQL server's `postgres` processes.
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The direct children of `parent` (e.g. nginx's workers), by scanning `/proc`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut kids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_ok_and(|s| s.ppid == parent))
        .collect();
    kids.sort_unstable();
    kids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let text = "1234 (nginx: worker (x) y) S 1200 1234 1234 0 -1 4194624 \
                    500 0 0 0 37 11 0 0 20 0 1 0 100 1000000 300 ...";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                ppid: 1200,
                cpu_ticks: 48
            })
        );
    }

    #[test]
    fn reads_own_stat_and_status() {
        let me = stat_of("self").expect("own stat");
        assert!(me.ppid > 0);
        assert!(peak_rss_kib(std::process::id()).expect("own VmHWM") > 0);
    }

    #[test]
    fn parses_proc_stat() {
        let text = "cpu  100 5 50 1000 7 3 2 9 0 0\ncpu0 50 2 25 500 3 1 1 4 0 0\n";
        assert_eq!(parse_system_busy(text), Some(160));
        assert!(system_busy_ticks().is_ok());
        assert!(context_switches(std::process::id()).is_ok());
    }

    #[test]
    fn parses_status_fields() {
        let text = "Name:\tx\nVmPeak:\t  1000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(4321));
        assert_eq!(parse_status_kib(text, "VmSwap"), None);
    }
}
