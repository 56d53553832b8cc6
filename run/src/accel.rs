//! Chooses QEMU's accelerator: KVM only where the host can run the whole stack, that is where
//! `/dev/kvm` opens and the host CPU offers VMX or SVM with nested virtualization enabled;
//! TCG everywhere else (a paravirtual `/dev/kvm` without VMX/SVM in the CPU flags, as on
//! some cloud machines, cannot run ordinary guests).

use crate::scenario::Accel;

/// What the host says about virtualization.
pub struct HostFacts {
    pub dev_kvm_opens: bool,
    /// Contents of `/proc/cpuinfo`.
    pub cpuinfo: String,
    /// `/sys/module/kvm_intel/parameters/nested`, if present.
    pub nested_intel: Option<String>,
    /// `/sys/module/kvm_amd/parameters/nested`, if present.
    pub nested_amd: Option<String>,
}

impl HostFacts {
    pub fn probe() -> HostFacts {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        HostFacts {
            dev_kvm_opens: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok(),
            cpuinfo: read("/proc/cpuinfo").unwrap_or_default(),
            nested_intel: read("/sys/module/kvm_intel/parameters/nested"),
            nested_amd: read("/sys/module/kvm_amd/parameters/nested"),
        }
    }
}

/// The accelerator to use and why, `forced` winning over detection.
pub fn choose(forced: Option<Accel>, host: &HostFacts) -> (Accel, String) {
    match (forced, kvm_unusable_because(host)) {
        (Some(accel), _) => (accel, "forced by --accel".into()),
        (None, None) => (Accel::Kvm, "host has nested VMX/SVM".into()),
        (None, Some(why)) => (Accel::Tcg, why.into()),
    }
}

/// `None` if KVM can run the stack, else the reason it cannot.
fn kvm_unusable_because(host: &HostFacts) -> Option<&'static str> {
    if !host.dev_kvm_opens {
        return Some("/dev/kvm cannot be opened");
    }
    let flags: Vec<&str> = host
        .cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    let enabled = |p: &Option<String>| {
        p.as_deref()
            .is_some_and(|v| matches!(v.trim(), "Y" | "y" | "1"))
    };
    let vmx = flags.contains(&"vmx");
    let svm = flags.contains(&"svm");
    if !vmx && !svm {
        return Some("host CPU flags have neither vmx nor svm");
    }
    if (vmx && enabled(&host.nested_intel)) || (svm && enabled(&host.nested_amd)) {
        None
    } else {
        Some("nested virtualization is off in kvm_intel/kvm_amd")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(opens: bool, flags: &str, intel: Option<&str>, amd: Option<&str>) -> HostFacts {
        HostFacts {
            dev_kvm_opens: opens,
            cpuinfo: format!(
                "processor\t: 0\nvendor_id\t: X\nflags\t\t: fpu {flags} sse2\n\nprocessor\t: 1\n"
            ),
            nested_intel: intel.map(str::to_owned),
            nested_amd: amd.map(str::to_owned),
        }
    }

    #[test]
    fn kvm_with_nested_vmx_or_svm() {
        assert_eq!(
            choose(None, &host(true, "vmx", Some("Y\n"), None)).0,
            Accel::Kvm
        );
        assert_eq!(
            choose(None, &host(true, "svm", None, Some("1\n"))).0,
            Accel::Kvm
        );
    }

    #[test]
    fn tcg_for_paravirtual_kvm_without_vmx_or_svm() {
        // What a kvm_pvm host reports: /dev/kvm opens, no vmx/svm, no nested parameter.
        let (accel, why) = choose(None, &host(true, "hypervisor", None, None));
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("neither vmx nor svm"), "{why}");
    }

    #[test]
    fn tcg_when_nested_is_off_or_for_the_other_vendor() {
        assert_eq!(
            choose(None, &host(true, "vmx", Some("N\n"), None)).0,
            Accel::Tcg
        );
        assert_eq!(
            choose(None, &host(true, "vmx", None, Some("1"))).0,
            Accel::Tcg
        );
        assert_eq!(
            choose(None, &host(false, "vmx", Some("Y"), None)).0,
            Accel::Tcg
        );
    }

    #[test]
    fn forced_accel_wins() {
        assert_eq!(
            choose(Some(Accel::Kvm), &host(false, "", None, None)).0,
            Accel::Kvm
        );
        assert_eq!(
            choose(Some(Accel::Tcg), &host(true, "vmx", Some("Y"), None)).0,
            Accel::Tcg
        );
    }
}
