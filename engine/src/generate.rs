//! A deterministic generator of large, realistic plan files, for benchmarks and scale tests.
//!
//! The same parameters and seed always give byte-identical text, so a benchmark figure can be
//! reproduced exactly. Randomness comes from SplitMix64: ten lines, stable forever, where a
//! general-purpose RNG crate makes no promise that its streams stay the same across versions.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy)]
pub struct EstateShape {
    pub machines: usize,
    /// Replication groups of equal size; machines beyond them stay ungrouped.
    pub groups: usize,
    pub master_targets: usize,
    /// Boot groups that order the failback.
    pub boot_groups: usize,
    pub seed: u64,
}

impl EstateShape {
    /// The estate of DESIGN.md §9: 10,000 machines, 1,000 groups, 40 master targets.
    pub fn design_bar() -> Self {
        Self {
            machines: 10_000,
            groups: 1_000,
            master_targets: 40,
            boot_groups: 5,
            seed: 1,
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014).
#[derive(Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0); the modulo bias is irrelevant at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Realistic disk sizes: mostly an OS disk plus one or two data disks.
const DISK_SIZES_GIB: &[u64] = &[32, 64, 128, 128, 256, 256, 512, 1024, 2048];

/// Writes the plan as YAML text. Groups are single-OS; every fourth group alternates OS, so
/// both kinds of master target are exercised. Master targets split evenly between the OSes
/// and are left for lifeboat to assign, which is the expensive path.
pub fn plan_yaml(shape: &EstateShape) -> String {
    let mut rng = SplitMix64::new(shape.seed);
    let mut out = String::with_capacity(shape.machines * 160);
    let os_of_group = |g: usize| if g % 4 == 3 { "windows" } else { "linux" };
    let group_size = shape.machines.checked_div(shape.groups).unwrap_or(0);

    out.push_str("version: 1\nname: generated-estate\n");
    out.push_str("provider:\n  sim:\n    world: .lifeboat/world.yaml\n");
    out.push_str(
        "site:\n  vcenter: vc-01\n  configuration_server: cs-01\n  process_server: ps-01\n",
    );
    out.push_str("master_targets:\n");
    for t in 0..shape.master_targets {
        let os = if t % 4 == 3 { "windows" } else { "linux" };
        let retention = if os == "windows" {
            "\"R:\""
        } else {
            "/mnt/retention"
        };
        let _ = writeln!(
            out,
            "  mt-{t:04}:\n    os: {os}\n    esxi_host: esx-{:03}\n    retention_drive: {retention}\n    datastores: [vsan-01, vmfs-{:02}]",
            t % 64,
            t % 16
        );
    }
    out.push_str("machines:\n");
    for m in 0..shape.machines {
        let group = if group_size > 0 && m / group_size < shape.groups {
            Some(m / group_size)
        } else {
            None
        };
        let os = os_of_group(group.unwrap_or(m));
        let disks = 1 + rng.below(2) as usize;
        let _ = write!(
            out,
            "  vm-{m:06}:\n    os: {os}\n    datastore: vsan-01\n    disks_gib: ["
        );
        for d in 0..disks {
            let size = DISK_SIZES_GIB[rng.below(DISK_SIZES_GIB.len() as u64) as usize];
            let _ = write!(out, "{}{size}", if d > 0 { ", " } else { "" });
        }
        out.push_str("]\n");
        if rng.below(8) == 0 {
            out.push_str("    recovery: alternate\n");
        }
        // A few dependencies on earlier machines: acyclic by construction.
        if m > 0 && rng.below(10) == 0 {
            let _ = writeln!(out, "    depends_on: [vm-{:06}]", rng.below(m as u64));
        }
    }
    if shape.groups > 0 && group_size > 0 {
        out.push_str("replication_groups:\n");
        for g in 0..shape.groups {
            let _ = write!(out, "  rg-{g:05}:\n    machines: [");
            for i in 0..group_size {
                let _ = write!(
                    out,
                    "{}vm-{:06}",
                    if i > 0 { ", " } else { "" },
                    g * group_size + i
                );
            }
            out.push_str("]\n");
        }
    }
    if shape.boot_groups > 0 {
        out.push_str("boot_order:\n");
        let per_group = shape.machines.div_ceil(shape.boot_groups);
        for b in 0..shape.boot_groups {
            let _ = write!(out, "  - name: tier-{b}\n    machines: [");
            let members = (b * per_group)..((b + 1) * per_group).min(shape.machines);
            for (i, m) in members.enumerate() {
                let _ = write!(out, "{}vm-{m:06}", if i > 0 { ", " } else { "" });
            }
            out.push_str("]\n");
        }
    }
    out.push_str(
        "maintenance_window:\n  start: 2026-12-05T22:00:00Z\n  end: 2026-12-06T04:00:00Z\n",
    );
    out
}
