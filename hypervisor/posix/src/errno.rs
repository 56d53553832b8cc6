//! Linux error numbers.
//!
//! Owns: the [`Errno`] newtype, one constant per Linux error number (x86_64
//! uses the generic table), and its name for logs. A system call that fails
//! returns `-errno` in RAX ([`Errno::to_return`]). Must not touch: which error
//! a call reports — that is each module's business.

use core::fmt;

/// A Linux error number (positive, as in `errno`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const ESRCH: Errno = Errno(3);
    pub const EINTR: Errno = Errno(4);
    pub const EIO: Errno = Errno(5);
    pub const ENXIO: Errno = Errno(6);
    pub const E2BIG: Errno = Errno(7);
    pub const ENOEXEC: Errno = Errno(8);
    pub const EBADF: Errno = Errno(9);
    pub const ECHILD: Errno = Errno(10);
    pub const EAGAIN: Errno = Errno(11);
    pub const ENOMEM: Errno = Errno(12);
    pub const EACCES: Errno = Errno(13);
    pub const EFAULT: Errno = Errno(14);
    pub const ENOTBLK: Errno = Errno(15);
    pub const EBUSY: Errno = Errno(16);
    pub const EEXIST: Errno = Errno(17);
    pub const EXDEV: Errno = Errno(18);
    pub const ENODEV: Errno = Errno(19);
    pub const ENOTDIR: Errno = Errno(20);
    pub const EISDIR: Errno = Errno(21);
    pub const EINVAL: Errno = Errno(22);
    pub const ENFILE: Errno = Errno(23);
    pub const EMFILE: Errno = Errno(24);
    pub const ENOTTY: Errno = Errno(25);
    pub const ETXTBSY: Errno = Errno(26);
    pub const EFBIG: Errno = Errno(27);
    pub const ENOSPC: Errno = Errno(28);
    pub const ESPIPE: Errno = Errno(29);
    pub const EROFS: Errno = Errno(30);
    pub const EMLINK: Errno = Errno(31);
    pub const EPIPE: Errno = Errno(32);
    pub const EDOM: Errno = Errno(33);
    pub const ERANGE: Errno = Errno(34);
    pub const EDEADLK: Errno = Errno(35);
    pub const ENAMETOOLONG: Errno = Errno(36);
    pub const ENOLCK: Errno = Errno(37);
    pub const ENOSYS: Errno = Errno(38);
    pub const ENOTEMPTY: Errno = Errno(39);
    pub const ELOOP: Errno = Errno(40);
    pub const ENOMSG: Errno = Errno(42);
    pub const EIDRM: Errno = Errno(43);
    pub const ECHRNG: Errno = Errno(44);
    pub const EL2NSYNC: Errno = Errno(45);
    pub const EL3HLT: Errno = Errno(46);
    pub const EL3RST: Errno = Errno(47);
    pub const ELNRNG: Errno = Errno(48);
    pub const EUNATCH: Errno = Errno(49);
    pub const ENOCSI: Errno = Errno(50);
    pub const EL2HLT: Errno = Errno(51);
    pub const EBADE: Errno = Errno(52);
    pub const EBADR: Errno = Errno(53);
    pub const EXFULL: Errno = Errno(54);
    pub const ENOANO: Errno = Errno(55);
    pub const EBADRQC: Errno = Errno(56);
    pub const EBADSLT: Errno = Errno(57);
    pub const EBFONT: Errno = Errno(59);
    pub const ENOSTR: Errno = Errno(60);
    pub const ENODATA: Errno = Errno(61);
    pub const ETIME: Errno = Errno(62);
    pub const ENOSR: Errno = Errno(63);
    pub const ENONET: Errno = Errno(64);
    pub const ENOPKG: Errno = Errno(65);
    pub const EREMOTE: Errno = Errno(66);
    pub const ENOLINK: Errno = Errno(67);
    pub const EADV: Errno = Errno(68);
    pub const ESRMNT: Errno = Errno(69);
    pub const ECOMM: Errno = Errno(70);
    pub const EPROTO: Errno = Errno(71);
    pub const EMULTIHOP: Errno = Errno(72);
    pub const EDOTDOT: Errno = Errno(73);
    pub const EBADMSG: Errno = Errno(74);
    pub const EOVERFLOW: Errno = Errno(75);
    pub const ENOTUNIQ: Errno = Errno(76);
    pub const EBADFD: Errno = Errno(77);
    pub const EREMCHG: Errno = Errno(78);
    pub const ELIBACC: Errno = Errno(79);
    pub const ELIBBAD: Errno = Errno(80);
    pub const ELIBSCN: Errno = Errno(81);
    pub const ELIBMAX: Errno = Errno(82);
    pub const ELIBEXEC: Errno = Errno(83);
    pub const EILSEQ: Errno = Errno(84);
    pub const ERESTART: Errno = Errno(85);
    pub const ESTRPIPE: Errno = Errno(86);
    pub const EUSERS: Errno = Errno(87);
    pub const ENOTSOCK: Errno = Errno(88);
    pub const EDESTADDRREQ: Errno = Errno(89);
    pub const EMSGSIZE: Errno = Errno(90);
    pub const EPROTOTYPE: Errno = Errno(91);
    pub const ENOPROTOOPT: Errno = Errno(92);
    pub const EPROTONOSUPPORT: Errno = Errno(93);
    pub const ESOCKTNOSUPPORT: Errno = Errno(94);
    pub const EOPNOTSUPP: Errno = Errno(95);
    pub const EPFNOSUPPORT: Errno = Errno(96);
    pub const EAFNOSUPPORT: Errno = Errno(97);
    pub const EADDRINUSE: Errno = Errno(98);
    pub const EADDRNOTAVAIL: Errno = Errno(99);
    pub const ENETDOWN: Errno = Errno(100);
    pub const ENETUNREACH: Errno = Errno(101);
    pub const ENETRESET: Errno = Errno(102);
    pub const ECONNABORTED: Errno = Errno(103);
    pub const ECONNRESET: Errno = Errno(104);
    pub const ENOBUFS: Errno = Errno(105);
    pub const EISCONN: Errno = Errno(106);
    pub const ENOTCONN: Errno = Errno(107);
    pub const ESHUTDOWN: Errno = Errno(108);
    pub const ETOOMANYREFS: Errno = Errno(109);
    pub const ETIMEDOUT: Errno = Errno(110);
    pub const ECONNREFUSED: Errno = Errno(111);
    pub const EHOSTDOWN: Errno = Errno(112);
    pub const EHOSTUNREACH: Errno = Errno(113);
    pub const EALREADY: Errno = Errno(114);
    pub const EINPROGRESS: Errno = Errno(115);
    pub const ESTALE: Errno = Errno(116);
    pub const EUCLEAN: Errno = Errno(117);
    pub const ENOTNAM: Errno = Errno(118);
    pub const ENAVAIL: Errno = Errno(119);
    pub const EISNAM: Errno = Errno(120);
    pub const EREMOTEIO: Errno = Errno(121);
    pub const EDQUOT: Errno = Errno(122);
    pub const ENOMEDIUM: Errno = Errno(123);
    pub const EMEDIUMTYPE: Errno = Errno(124);
    pub const ECANCELED: Errno = Errno(125);
    pub const ENOKEY: Errno = Errno(126);
    pub const EKEYEXPIRED: Errno = Errno(127);
    pub const EKEYREVOKED: Errno = Errno(128);
    pub const EKEYREJECTED: Errno = Errno(129);
    pub const EOWNERDEAD: Errno = Errno(130);
    pub const ENOTRECOVERABLE: Errno = Errno(131);
    pub const ERFKILL: Errno = Errno(132);
    pub const EHWPOISON: Errno = Errno(133);
    /// Linux's alias of [`Errno::EAGAIN`].
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// Linux's alias of [`Errno::EDEADLK`].
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// The value a failing system call returns in RAX: `-errno`.
    pub fn to_return(self) -> u64 {
        (-(self.0 as i64)) as u64
    }

    /// The symbolic name (`"ENOENT"`), or `"E?"` for a number Linux does not
    /// define.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            6 => "ENXIO",
            7 => "E2BIG",
            8 => "ENOEXEC",
            9 => "EBADF",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            15 => "ENOTBLK",
            16 => "EBUSY",
            17 => "EEXIST",
            18 => "EXDEV",
            19 => "ENODEV",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            23 => "ENFILE",
            24 => "EMFILE",
            25 => "ENOTTY",
            26 => "ETXTBSY",
            27 => "EFBIG",
            28 => "ENOSPC",
            29 => "ESPIPE",
            30 => "EROFS",
            31 => "EMLINK",
            32 => "EPIPE",
            33 => "EDOM",
            34 => "ERANGE",
            35 => "EDEADLK",
            36 => "ENAMETOOLONG",
            37 => "ENOLCK",
            38 => "ENOSYS",
            39 => "ENOTEMPTY",
            40 => "ELOOP",
            42 => "ENOMSG",
            43 => "EIDRM",
            44 => "ECHRNG",
            45 => "EL2NSYNC",
            46 => "EL3HLT",
            47 => "EL3RST",
            48 => "ELNRNG",
            49 => "EUNATCH",
            50 => "ENOCSI",
            51 => "EL2HLT",
            52 => "EBADE",
            53 => "EBADR",
            54 => "EXFULL",
            55 => "ENOANO",
            56 => "EBADRQC",
            57 => "EBADSLT",
            59 => "EBFONT",
            60 => "ENOSTR",
            61 => "ENODATA",
            62 => "ETIME",
            63 => "ENOSR",
            64 => "ENONET",
            65 => "ENOPKG",
            66 => "EREMOTE",
            67 => "ENOLINK",
            68 => "EADV",
            69 => "ESRMNT",
            70 => "ECOMM",
            71 => "EPROTO",
            72 => "EMULTIHOP",
            73 => "EDOTDOT",
            74 => "EBADMSG",
            75 => "EOVERFLOW",
            76 => "ENOTUNIQ",
            77 => "EBADFD",
            78 => "EREMCHG",
            79 => "ELIBACC",
            80 => "ELIBBAD",
            81 => "ELIBSCN",
            82 => "ELIBMAX",
            83 => "ELIBEXEC",
            84 => "EILSEQ",
            85 => "ERESTART",
            86 => "ESTRPIPE",
            87 => "EUSERS",
            88 => "ENOTSOCK",
            89 => "EDESTADDRREQ",
            90 => "EMSGSIZE",
            91 => "EPROTOTYPE",
            92 => "ENOPROTOOPT",
            93 => "EPROTONOSUPPORT",
            94 => "ESOCKTNOSUPPORT",
            95 => "EOPNOTSUPP",
            96 => "EPFNOSUPPORT",
            97 => "EAFNOSUPPORT",
            98 => "EADDRINUSE",
            99 => "EADDRNOTAVAIL",
            100 => "ENETDOWN",
            101 => "ENETUNREACH",
            102 => "ENETRESET",
            103 => "ECONNABORTED",
            104 => "ECONNRESET",
            105 => "ENOBUFS",
            106 => "EISCONN",
            107 => "ENOTCONN",
            108 => "ESHUTDOWN",
            109 => "ETOOMANYREFS",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            112 => "EHOSTDOWN",
            113 => "EHOSTUNREACH",
            114 => "EALREADY",
            115 => "EINPROGRESS",
            116 => "ESTALE",
            117 => "EUCLEAN",
            118 => "ENOTNAM",
            119 => "ENAVAIL",
            120 => "EISNAM",
            121 => "EREMOTEIO",
            122 => "EDQUOT",
            123 => "ENOMEDIUM",
            124 => "EMEDIUMTYPE",
            125 => "ECANCELED",
            126 => "ENOKEY",
            127 => "EKEYEXPIRED",
            128 => "EKEYREVOKED",
            129 => "EKEYREJECTED",
            130 => "EOWNERDEAD",
            131 => "ENOTRECOVERABLE",
            132 => "ERFKILL",
            133 => "EHWPOISON",
            _ => "E?",
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_return_values() {
        assert_eq!(Errno::ENOSYS.name(), "ENOSYS");
        assert_eq!(Errno(38), Errno::ENOSYS);
        assert_eq!(Errno::ENOENT.to_return(), (-2i64) as u64);
        assert_eq!(Errno(9999).name(), "E?");
        assert_eq!(alloc::format!("{}", Errno::EFAULT), "EFAULT (14)");
    }

    #[test]
    fn numbers_agree_with_libc() {
        assert_eq!(Errno::EPERM.0, libc::EPERM);
        assert_eq!(Errno::ENOENT.0, libc::ENOENT);
        assert_eq!(Errno::ESRCH.0, libc::ESRCH);
        assert_eq!(Errno::EINTR.0, libc::EINTR);
        assert_eq!(Errno::EIO.0, libc::EIO);
        assert_eq!(Errno::ENXIO.0, libc::ENXIO);
        assert_eq!(Errno::E2BIG.0, libc::E2BIG);
        assert_eq!(Errno::ENOEXEC.0, libc::ENOEXEC);
        assert_eq!(Errno::EBADF.0, libc::EBADF);
        assert_eq!(Errno::ECHILD.0, libc::ECHILD);
        assert_eq!(Errno::EAGAIN.0, libc::EAGAIN);
        assert_eq!(Errno::ENOMEM.0, libc::ENOMEM);
        assert_eq!(Errno::EACCES.0, libc::EACCES);
        assert_eq!(Errno::EFAULT.0, libc::EFAULT);
        assert_eq!(Errno::ENOTBLK.0, libc::ENOTBLK);
        assert_eq!(Errno::EBUSY.0, libc::EBUSY);
        assert_eq!(Errno::EEXIST.0, libc::EEXIST);
        assert_eq!(Errno::EXDEV.0, libc::EXDEV);
        assert_eq!(Errno::ENODEV.0, libc::ENODEV);
        assert_eq!(Errno::ENOTDIR.0, libc::ENOTDIR);
        assert_eq!(Errno::EISDIR.0, libc::EISDIR);
        assert_eq!(Errno::EINVAL.0, libc::EINVAL);
        assert_eq!(Errno::ENFILE.0, libc::ENFILE);
        assert_eq!(Errno::EMFILE.0, libc::EMFILE);
        assert_eq!(Errno::ENOTTY.0, libc::ENOTTY);
        assert_eq!(Errno::ETXTBSY.0, libc::ETXTBSY);
        assert_eq!(Errno::EFBIG.0, libc::EFBIG);
        assert_eq!(Errno::ENOSPC.0, libc::ENOSPC);
        assert_eq!(Errno::ESPIPE.0, libc::ESPIPE);
        assert_eq!(Errno::EROFS.0, libc::EROFS);
        assert_eq!(Errno::EMLINK.0, libc::EMLINK);
        assert_eq!(Errno::EPIPE.0, libc::EPIPE);
        assert_eq!(Errno::EDOM.0, libc::EDOM);
        assert_eq!(Errno::ERANGE.0, libc::ERANGE);
        assert_eq!(Errno::EDEADLK.0, libc::EDEADLK);
        assert_eq!(Errno::ENAMETOOLONG.0, libc::ENAMETOOLONG);
        assert_eq!(Errno::ENOLCK.0, libc::ENOLCK);
        assert_eq!(Errno::ENOSYS.0, libc::ENOSYS);
        assert_eq!(Errno::ENOTEMPTY.0, libc::ENOTEMPTY);
        assert_eq!(Errno::ELOOP.0, libc::ELOOP);
        assert_eq!(Errno::ENOMSG.0, libc::ENOMSG);
        assert_eq!(Errno::EIDRM.0, libc::EIDRM);
        assert_eq!(Errno::ECHRNG.0, libc::ECHRNG);
        assert_eq!(Errno::EL2NSYNC.0, libc::EL2NSYNC);
        assert_eq!(Errno::EL3HLT.0, libc::EL3HLT);
        assert_eq!(Errno::EL3RST.0, libc::EL3RST);
        assert_eq!(Errno::ELNRNG.0, libc::ELNRNG);
        assert_eq!(Errno::EUNATCH.0, libc::EUNATCH);
        assert_eq!(Errno::ENOCSI.0, libc::ENOCSI);
        assert_eq!(Errno::EL2HLT.0, libc::EL2HLT);
        assert_eq!(Errno::EBADE.0, libc::EBADE);
        assert_eq!(Errno::EBADR.0, libc::EBADR);
        assert_eq!(Errno::EXFULL.0, libc::EXFULL);
        assert_eq!(Errno::ENOANO.0, libc::ENOANO);
        assert_eq!(Errno::EBADRQC.0, libc::EBADRQC);
        assert_eq!(Errno::EBADSLT.0, libc::EBADSLT);
        assert_eq!(Errno::EBFONT.0, libc::EBFONT);
        assert_eq!(Errno::ENOSTR.0, libc::ENOSTR);
        assert_eq!(Errno::ENODATA.0, libc::ENODATA);
        assert_eq!(Errno::ETIME.0, libc::ETIME);
        assert_eq!(Errno::ENOSR.0, libc::ENOSR);
        assert_eq!(Errno::ENONET.0, libc::ENONET);
        assert_eq!(Errno::ENOPKG.0, libc::ENOPKG);
        assert_eq!(Errno::EREMOTE.0, libc::EREMOTE);
        assert_eq!(Errno::ENOLINK.0, libc::ENOLINK);
        assert_eq!(Errno::EADV.0, libc::EADV);
        assert_eq!(Errno::ESRMNT.0, libc::ESRMNT);
        assert_eq!(Errno::ECOMM.0, libc::ECOMM);
        assert_eq!(Errno::EPROTO.0, libc::EPROTO);
        assert_eq!(Errno::EMULTIHOP.0, libc::EMULTIHOP);
        assert_eq!(Errno::EDOTDOT.0, libc::EDOTDOT);
        assert_eq!(Errno::EBADMSG.0, libc::EBADMSG);
        assert_eq!(Errno::EOVERFLOW.0, libc::EOVERFLOW);
        assert_eq!(Errno::ENOTUNIQ.0, libc::ENOTUNIQ);
        assert_eq!(Errno::EBADFD.0, libc::EBADFD);
        assert_eq!(Errno::EREMCHG.0, libc::EREMCHG);
        assert_eq!(Errno::ELIBACC.0, libc::ELIBACC);
        assert_eq!(Errno::ELIBBAD.0, libc::ELIBBAD);
        assert_eq!(Errno::ELIBSCN.0, libc::ELIBSCN);
        assert_eq!(Errno::ELIBMAX.0, libc::ELIBMAX);
        assert_eq!(Errno::ELIBEXEC.0, libc::ELIBEXEC);
        assert_eq!(Errno::EILSEQ.0, libc::EILSEQ);
        assert_eq!(Errno::ERESTART.0, libc::ERESTART);
        assert_eq!(Errno::ESTRPIPE.0, libc::ESTRPIPE);
        assert_eq!(Errno::EUSERS.0, libc::EUSERS);
        assert_eq!(Errno::ENOTSOCK.0, libc::ENOTSOCK);
        assert_eq!(Errno::EDESTADDRREQ.0, libc::EDESTADDRREQ);
        assert_eq!(Errno::EMSGSIZE.0, libc::EMSGSIZE);
        assert_eq!(Errno::EPROTOTYPE.0, libc::EPROTOTYPE);
        assert_eq!(Errno::ENOPROTOOPT.0, libc::ENOPROTOOPT);
        assert_eq!(Errno::EPROTONOSUPPORT.0, libc::EPROTONOSUPPORT);
        assert_eq!(Errno::ESOCKTNOSUPPORT.0, libc::ESOCKTNOSUPPORT);
        assert_eq!(Errno::EOPNOTSUPP.0, libc::EOPNOTSUPP);
        assert_eq!(Errno::EPFNOSUPPORT.0, libc::EPFNOSUPPORT);
        assert_eq!(Errno::EAFNOSUPPORT.0, libc::EAFNOSUPPORT);
        assert_eq!(Errno::EADDRINUSE.0, libc::EADDRINUSE);
        assert_eq!(Errno::EADDRNOTAVAIL.0, libc::EADDRNOTAVAIL);
        assert_eq!(Errno::ENETDOWN.0, libc::ENETDOWN);
        assert_eq!(Errno::ENETUNREACH.0, libc::ENETUNREACH);
        assert_eq!(Errno::ENETRESET.0, libc::ENETRESET);
        assert_eq!(Errno::ECONNABORTED.0, libc::ECONNABORTED);
        assert_eq!(Errno::ECONNRESET.0, libc::ECONNRESET);
        assert_eq!(Errno::ENOBUFS.0, libc::ENOBUFS);
        assert_eq!(Errno::EISCONN.0, libc::EISCONN);
        assert_eq!(Errno::ENOTCONN.0, libc::ENOTCONN);
        assert_eq!(Errno::ESHUTDOWN.0, libc::ESHUTDOWN);
        assert_eq!(Errno::ETOOMANYREFS.0, libc::ETOOMANYREFS);
        assert_eq!(Errno::ETIMEDOUT.0, libc::ETIMEDOUT);
        assert_eq!(Errno::ECONNREFUSED.0, libc::ECONNREFUSED);
        assert_eq!(Errno::EHOSTDOWN.0, libc::EHOSTDOWN);
        assert_eq!(Errno::EHOSTUNREACH.0, libc::EHOSTUNREACH);
        assert_eq!(Errno::EALREADY.0, libc::EALREADY);
        assert_eq!(Errno::EINPROGRESS.0, libc::EINPROGRESS);
        assert_eq!(Errno::ESTALE.0, libc::ESTALE);
        assert_eq!(Errno::EUCLEAN.0, libc::EUCLEAN);
        assert_eq!(Errno::ENOTNAM.0, libc::ENOTNAM);
        assert_eq!(Errno::ENAVAIL.0, libc::ENAVAIL);
        assert_eq!(Errno::EISNAM.0, libc::EISNAM);
        assert_eq!(Errno::EREMOTEIO.0, libc::EREMOTEIO);
        assert_eq!(Errno::EDQUOT.0, libc::EDQUOT);
        assert_eq!(Errno::ENOMEDIUM.0, libc::ENOMEDIUM);
        assert_eq!(Errno::EMEDIUMTYPE.0, libc::EMEDIUMTYPE);
        assert_eq!(Errno::ECANCELED.0, libc::ECANCELED);
        assert_eq!(Errno::ENOKEY.0, libc::ENOKEY);
        assert_eq!(Errno::EKEYEXPIRED.0, libc::EKEYEXPIRED);
        assert_eq!(Errno::EKEYREVOKED.0, libc::EKEYREVOKED);
        assert_eq!(Errno::EKEYREJECTED.0, libc::EKEYREJECTED);
        assert_eq!(Errno::EOWNERDEAD.0, libc::EOWNERDEAD);
        assert_eq!(Errno::ENOTRECOVERABLE.0, libc::ENOTRECOVERABLE);
        assert_eq!(Errno::ERFKILL.0, libc::ERFKILL);
        assert_eq!(Errno::EHWPOISON.0, libc::EHWPOISON);
    }
}
