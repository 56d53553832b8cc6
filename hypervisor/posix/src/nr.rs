//! x86_64 Linux system call numbers.
//!
//! Owns: the numbers a program puts in RAX before `syscall`, as constants, and
//! [`name`] that turns any number into its name (to log an unsupported call
//! once, by name). Must not touch: what a call does — that is the caller's
//! dispatcher. The numbers are those of Linux's `arch/x86/entry/syscalls`
//! table for the 64-bit ABI (x32 numbers are not served).

pub const READ: u64 = 0;
pub const WRITE: u64 = 1;
pub const OPEN: u64 = 2;
pub const CLOSE: u64 = 3;
pub const STAT: u64 = 4;
pub const FSTAT: u64 = 5;
pub const LSTAT: u64 = 6;
pub const POLL: u64 = 7;
pub const LSEEK: u64 = 8;
pub const MMAP: u64 = 9;
pub const MPROTECT: u64 = 10;
pub const MUNMAP: u64 = 11;
pub const BRK: u64 = 12;
pub const RT_SIGACTION: u64 = 13;
pub const RT_SIGPROCMASK: u64 = 14;
pub const RT_SIGRETURN: u64 = 15;
pub const IOCTL: u64 = 16;
pub const PREAD64: u64 = 17;
pub const PWRITE64: u64 = 18;
pub const READV: u64 = 19;
pub const WRITEV: u64 = 20;
pub const ACCESS: u64 = 21;
pub const PIPE: u64 = 22;
pub const SELECT: u64 = 23;
pub const SCHED_YIELD: u64 = 24;
pub const MREMAP: u64 = 25;
pub const MSYNC: u64 = 26;
pub const MINCORE: u64 = 27;
pub const MADVISE: u64 = 28;
pub const SHMGET: u64 = 29;
pub const SHMAT: u64 = 30;
pub const SHMCTL: u64 = 31;
pub const DUP: u64 = 32;
pub const DUP2: u64 = 33;
pub const PAUSE: u64 = 34;
pub const NANOSLEEP: u64 = 35;
pub const GETITIMER: u64 = 36;
pub const ALARM: u64 = 37;
pub const SETITIMER: u64 = 38;
pub const GETPID: u64 = 39;
pub const SENDFILE: u64 = 40;
pub const SOCKET: u64 = 41;
pub const CONNECT: u64 = 42;
pub const ACCEPT: u64 = 43;
pub const SENDTO: u64 = 44;
pub const RECVFROM: u64 = 45;
pub const SENDMSG: u64 = 46;
pub const RECVMSG: u64 = 47;
pub const SHUTDOWN: u64 = 48;
pub const BIND: u64 = 49;
pub const LISTEN: u64 = 50;
pub const GETSOCKNAME: u64 = 51;
pub const GETPEERNAME: u64 = 52;
pub const SOCKETPAIR: u64 = 53;
pub const SETSOCKOPT: u64 = 54;
pub const GETSOCKOPT: u64 = 55;
pub const CLONE: u64 = 56;
pub const FORK: u64 = 57;
pub const VFORK: u64 = 58;
pub const EXECVE: u64 = 59;
pub const EXIT: u64 = 60;
pub const WAIT4: u64 = 61;
pub const KILL: u64 = 62;
pub const UNAME: u64 = 63;
pub const SEMGET: u64 = 64;
pub const SEMOP: u64 = 65;
pub const SEMCTL: u64 = 66;
pub const SHMDT: u64 = 67;
pub const MSGGET: u64 = 68;
pub const MSGSND: u64 = 69;
pub const MSGRCV: u64 = 70;
pub const MSGCTL: u64 = 71;
pub const FCNTL: u64 = 72;
pub const FLOCK: u64 = 73;
pub const FSYNC: u64 = 74;
pub const FDATASYNC: u64 = 75;
pub const TRUNCATE: u64 = 76;
pub const FTRUNCATE: u64 = 77;
pub const GETDENTS: u64 = 78;
pub const GETCWD: u64 = 79;
pub const CHDIR: u64 = 80;
pub const FCHDIR: u64 = 81;
pub const RENAME: u64 = 82;
pub const MKDIR: u64 = 83;
pub const RMDIR: u64 = 84;
pub const CREAT: u64 = 85;
pub const LINK: u64 = 86;
pub const UNLINK: u64 = 87;
pub const SYMLINK: u64 = 88;
pub const READLINK: u64 = 89;
pub const CHMOD: u64 = 90;
pub const FCHMOD: u64 = 91;
pub const CHOWN: u64 = 92;
pub const FCHOWN: u64 = 93;
pub const LCHOWN: u64 = 94;
pub const UMASK: u64 = 95;
pub const GETTIMEOFDAY: u64 = 96;
pub const GETRLIMIT: u64 = 97;
pub const GETRUSAGE: u64 = 98;
pub const SYSINFO: u64 = 99;
pub const TIMES: u64 = 100;
pub const PTRACE: u64 = 101;
pub const GETUID: u64 = 102;
pub const SYSLOG: u64 = 103;
pub const GETGID: u64 = 104;
pub const SETUID: u64 = 105;
pub const SETGID: u64 = 106;
pub const GETEUID: u64 = 107;
pub const GETEGID: u64 = 108;
pub const SETPGID: u64 = 109;
pub const GETPPID: u64 = 110;
pub const GETPGRP: u64 = 111;
pub const SETSID: u64 = 112;
pub const SETREUID: u64 = 113;
pub const SETREGID: u64 = 114;
pub const GETGROUPS: u64 = 115;
pub const SETGROUPS: u64 = 116;
pub const SETRESUID: u64 = 117;
pub const GETRESUID: u64 = 118;
pub const SETRESGID: u64 = 119;
pub const GETRESGID: u64 = 120;
pub const GETPGID: u64 = 121;
pub const SETFSUID: u64 = 122;
pub const SETFSGID: u64 = 123;
pub const GETSID: u64 = 124;
pub const CAPGET: u64 = 125;
pub const CAPSET: u64 = 126;
pub const RT_SIGPENDING: u64 = 127;
pub const RT_SIGTIMEDWAIT: u64 = 128;
pub const RT_SIGQUEUEINFO: u64 = 129;
pub const RT_SIGSUSPEND: u64 = 130;
pub const SIGALTSTACK: u64 = 131;
pub const UTIME: u64 = 132;
pub const MKNOD: u64 = 133;
pub const USELIB: u64 = 134;
pub const PERSONALITY: u64 = 135;
pub const USTAT: u64 = 136;
pub const STATFS: u64 = 137;
pub const FSTATFS: u64 = 138;
pub const SYSFS: u64 = 139;
pub const GETPRIORITY: u64 = 140;
pub const SETPRIORITY: u64 = 141;
pub const SCHED_SETPARAM: u64 = 142;
pub const SCHED_GETPARAM: u64 = 143;
pub const SCHED_SETSCHEDULER: u64 = 144;
pub const SCHED_GETSCHEDULER: u64 = 145;
pub const SCHED_GET_PRIORITY_MAX: u64 = 146;
pub const SCHED_GET_PRIORITY_MIN: u64 = 147;
pub const SCHED_RR_GET_INTERVAL: u64 = 148;
pub const MLOCK: u64 = 149;
pub const MUNLOCK: u64 = 150;
pub const MLOCKALL: u64 = 151;
pub const MUNLOCKALL: u64 = 152;
pub const VHANGUP: u64 = 153;
pub const MODIFY_LDT: u64 = 154;
pub const PIVOT_ROOT: u64 = 155;
pub const _SYSCTL: u64 = 156;
pub const PRCTL: u64 = 157;
pub const ARCH_PRCTL: u64 = 158;
pub const ADJTIMEX: u64 = 159;
pub const SETRLIMIT: u64 = 160;
pub const CHROOT: u64 = 161;
pub const SYNC: u64 = 162;
pub const ACCT: u64 = 163;
pub const SETTIMEOFDAY: u64 = 164;
pub const MOUNT: u64 = 165;
pub const UMOUNT2: u64 = 166;
pub const SWAPON: u64 = 167;
pub const SWAPOFF: u64 = 168;
pub const REBOOT: u64 = 169;
pub const SETHOSTNAME: u64 = 170;
pub const SETDOMAINNAME: u64 = 171;
pub const IOPL: u64 = 172;
pub const IOPERM: u64 = 173;
pub const CREATE_MODULE: u64 = 174;
pub const INIT_MODULE: u64 = 175;
pub const DELETE_MODULE: u64 = 176;
pub const GET_KERNEL_SYMS: u64 = 177;
pub const QUERY_MODULE: u64 = 178;
pub const QUOTACTL: u64 = 179;
pub const NFSSERVCTL: u64 = 180;
pub const GETPMSG: u64 = 181;
pub const PUTPMSG: u64 = 182;
pub const AFS_SYSCALL: u64 = 183;
pub const TUXCALL: u64 = 184;
pub const SECURITY: u64 = 185;
pub const GETTID: u64 = 186;
pub const READAHEAD: u64 = 187;
pub const SETXATTR: u64 = 188;
pub const LSETXATTR: u64 = 189;
pub const FSETXATTR: u64 = 190;
pub const GETXATTR: u64 = 191;
pub const LGETXATTR: u64 = 192;
pub const FGETXATTR: u64 = 193;
pub const LISTXATTR: u64 = 194;
pub const LLISTXATTR: u64 = 195;
pub const FLISTXATTR: u64 = 196;
pub const REMOVEXATTR: u64 = 197;
pub const LREMOVEXATTR: u64 = 198;
pub const FREMOVEXATTR: u64 = 199;
pub const TKILL: u64 = 200;
pub const TIME: u64 = 201;
pub const FUTEX: u64 = 202;
pub const SCHED_SETAFFINITY: u64 = 203;
pub const SCHED_GETAFFINITY: u64 = 204;
pub const SET_THREAD_AREA: u64 = 205;
pub const IO_SETUP: u64 = 206;
pub const IO_DESTROY: u64 = 207;
pub const IO_GETEVENTS: u64 = 208;
pub const IO_SUBMIT: u64 = 209;
pub const IO_CANCEL: u64 = 210;
pub const GET_THREAD_AREA: u64 = 211;
pub const LOOKUP_DCOOKIE: u64 = 212;
pub const EPOLL_CREATE: u64 = 213;
pub const EPOLL_CTL_OLD: u64 = 214;
pub const EPOLL_WAIT_OLD: u64 = 215;
pub const REMAP_FILE_PAGES: u64 = 216;
pub const GETDENTS64: u64 = 217;
pub const SET_TID_ADDRESS: u64 = 218;
pub const RESTART_SYSCALL: u64 = 219;
pub const SEMTIMEDOP: u64 = 220;
pub const FADVISE64: u64 = 221;
pub const TIMER_CREATE: u64 = 222;
pub const TIMER_SETTIME: u64 = 223;
pub const TIMER_GETTIME: u64 = 224;
pub const TIMER_GETOVERRUN: u64 = 225;
pub const TIMER_DELETE: u64 = 226;
pub const CLOCK_SETTIME: u64 = 227;
pub const CLOCK_GETTIME: u64 = 228;
pub const CLOCK_GETRES: u64 = 229;
pub const CLOCK_NANOSLEEP: u64 = 230;
pub const EXIT_GROUP: u64 = 231;
pub const EPOLL_WAIT: u64 = 232;
pub const EPOLL_CTL: u64 = 233;
pub const TGKILL: u64 = 234;
pub const UTIMES: u64 = 235;
pub const VSERVER: u64 = 236;
pub const MBIND: u64 = 237;
pub const SET_MEMPOLICY: u64 = 238;
pub const GET_MEMPOLICY: u64 = 239;
pub const MQ_OPEN: u64 = 240;
pub const MQ_UNLINK: u64 = 241;
pub const MQ_TIMEDSEND: u64 = 242;
pub const MQ_TIMEDRECEIVE: u64 = 243;
pub const MQ_NOTIFY: u64 = 244;
pub const MQ_GETSETATTR: u64 = 245;
pub const KEXEC_LOAD: u64 = 246;
pub const WAITID: u64 = 247;
pub const ADD_KEY: u64 = 248;
pub const REQUEST_KEY: u64 = 249;
pub const KEYCTL: u64 = 250;
pub const IOPRIO_SET: u64 = 251;
pub const IOPRIO_GET: u64 = 252;
pub const INOTIFY_INIT: u64 = 253;
pub const INOTIFY_ADD_WATCH: u64 = 254;
pub const INOTIFY_RM_WATCH: u64 = 255;
pub const MIGRATE_PAGES: u64 = 256;
pub const OPENAT: u64 = 257;
pub const MKDIRAT: u64 = 258;
pub const MKNODAT: u64 = 259;
pub const FCHOWNAT: u64 = 260;
pub const FUTIMESAT: u64 = 261;
pub const NEWFSTATAT: u64 = 262;
pub const UNLINKAT: u64 = 263;
pub const RENAMEAT: u64 = 264;
pub const LINKAT: u64 = 265;
pub const SYMLINKAT: u64 = 266;
pub const READLINKAT: u64 = 267;
pub const FCHMODAT: u64 = 268;
pub const FACCESSAT: u64 = 269;
pub const PSELECT6: u64 = 270;
pub const PPOLL: u64 = 271;
pub const UNSHARE: u64 = 272;
pub const SET_ROBUST_LIST: u64 = 273;
pub const GET_ROBUST_LIST: u64 = 274;
pub const SPLICE: u64 = 275;
pub const TEE: u64 = 276;
pub const SYNC_FILE_RANGE: u64 = 277;
pub const VMSPLICE: u64 = 278;
pub const MOVE_PAGES: u64 = 279;
pub const UTIMENSAT: u64 = 280;
pub const EPOLL_PWAIT: u64 = 281;
pub const SIGNALFD: u64 = 282;
pub const TIMERFD_CREATE: u64 = 283;
pub const EVENTFD: u64 = 284;
pub const FALLOCATE: u64 = 285;
pub const TIMERFD_SETTIME: u64 = 286;
pub const TIMERFD_GETTIME: u64 = 287;
pub const ACCEPT4: u64 = 288;
pub const SIGNALFD4: u64 = 289;
pub const EVENTFD2: u64 = 290;
pub const EPOLL_CREATE1: u64 = 291;
pub const DUP3: u64 = 292;
pub const PIPE2: u64 = 293;
pub const INOTIFY_INIT1: u64 = 294;
pub const PREADV: u64 = 295;
pub const PWRITEV: u64 = 296;
pub const RT_TGSIGQUEUEINFO: u64 = 297;
pub const PERF_EVENT_OPEN: u64 = 298;
pub const RECVMMSG: u64 = 299;
pub const FANOTIFY_INIT: u64 = 300;
pub const FANOTIFY_MARK: u64 = 301;
pub const PRLIMIT64: u64 = 302;
pub const NAME_TO_HANDLE_AT: u64 = 303;
pub const OPEN_BY_HANDLE_AT: u64 = 304;
pub const CLOCK_ADJTIME: u64 = 305;
pub const SYNCFS: u64 = 306;
pub const SENDMMSG: u64 = 307;
pub const SETNS: u64 = 308;
pub const GETCPU: u64 = 309;
pub const PROCESS_VM_READV: u64 = 310;
pub const PROCESS_VM_WRITEV: u64 = 311;
pub const KCMP: u64 = 312;
pub const FINIT_MODULE: u64 = 313;
pub const SCHED_SETATTR: u64 = 314;
pub const SCHED_GETATTR: u64 = 315;
pub const RENAMEAT2: u64 = 316;
pub const SECCOMP: u64 = 317;
pub const GETRANDOM: u64 = 318;
pub const MEMFD_CREATE: u64 = 319;
pub const KEXEC_FILE_LOAD: u64 = 320;
pub const BPF: u64 = 321;
pub const EXECVEAT: u64 = 322;
pub const USERFAULTFD: u64 = 323;
pub const MEMBARRIER: u64 = 324;
pub const MLOCK2: u64 = 325;
pub const COPY_FILE_RANGE: u64 = 326;
pub const PREADV2: u64 = 327;
pub const PWRITEV2: u64 = 328;
pub const PKEY_MPROTECT: u64 = 329;
pub const PKEY_ALLOC: u64 = 330;
pub const PKEY_FREE: u64 = 331;
pub const STATX: u64 = 332;
pub const IO_PGETEVENTS: u64 = 333;
pub const RSEQ: u64 = 334;
pub const PIDFD_SEND_SIGNAL: u64 = 424;
pub const IO_URING_SETUP: u64 = 425;
pub const IO_URING_ENTER: u64 = 426;
pub const IO_URING_REGISTER: u64 = 427;
pub const OPEN_TREE: u64 = 428;
pub const MOVE_MOUNT: u64 = 429;
pub const FSOPEN: u64 = 430;
pub const FSCONFIG: u64 = 431;
pub const FSMOUNT: u64 = 432;
pub const FSPICK: u64 = 433;
pub const PIDFD_OPEN: u64 = 434;
pub const CLONE3: u64 = 435;
pub const CLOSE_RANGE: u64 = 436;
pub const OPENAT2: u64 = 437;
pub const PIDFD_GETFD: u64 = 438;
pub const FACCESSAT2: u64 = 439;
pub const PROCESS_MADVISE: u64 = 440;
pub const EPOLL_PWAIT2: u64 = 441;
pub const MOUNT_SETATTR: u64 = 442;
pub const QUOTACTL_FD: u64 = 443;
pub const LANDLOCK_CREATE_RULESET: u64 = 444;
pub const LANDLOCK_ADD_RULE: u64 = 445;
pub const LANDLOCK_RESTRICT_SELF: u64 = 446;
pub const MEMFD_SECRET: u64 = 447;
pub const PROCESS_MRELEASE: u64 = 448;
pub const FUTEX_WAITV: u64 = 449;
pub const SET_MEMPOLICY_HOME_NODE: u64 = 450;

/// The name of system call `nr`, or `"unknown"` for a number Linux does not
/// define on x86_64.
pub fn name(nr: u64) -> &'static str {
    match nr {
        READ => "read",
        WRITE => "write",
        OPEN => "open",
        CLOSE => "close",
        STAT => "stat",
        FSTAT => "fstat",
        LSTAT => "lstat",
        POLL => "poll",
        LSEEK => "lseek",
        MMAP => "mmap",
        MPROTECT => "mprotect",
        MUNMAP => "munmap",
        BRK => "brk",
        RT_SIGACTION => "rt_sigaction",
        RT_SIGPROCMASK => "rt_sigprocmask",
        RT_SIGRETURN => "rt_sigreturn",
        IOCTL => "ioctl",
        PREAD64 => "pread64",
        PWRITE64 => "pwrite64",
        READV => "readv",
        WRITEV => "writev",
        ACCESS => "access",
        PIPE => "pipe",
        SELECT => "select",
        SCHED_YIELD => "sched_yield",
        MREMAP => "mremap",
        MSYNC => "msync",
        MINCORE => "mincore",
        MADVISE => "madvise",
        SHMGET => "shmget",
        SHMAT => "shmat",
        SHMCTL => "shmctl",
        DUP => "dup",
        DUP2 => "dup2",
        PAUSE => "pause",
        NANOSLEEP => "nanosleep",
        GETITIMER => "getitimer",
        ALARM => "alarm",
        SETITIMER => "setitimer",
        GETPID => "getpid",
        SENDFILE => "sendfile",
        SOCKET => "socket",
        CONNECT => "connect",
        ACCEPT => "accept",
        SENDTO => "sendto",
        RECVFROM => "recvfrom",
        SENDMSG => "sendmsg",
        RECVMSG => "recvmsg",
        SHUTDOWN => "shutdown",
        BIND => "bind",
        LISTEN => "listen",
        GETSOCKNAME => "getsockname",
        GETPEERNAME => "getpeername",
        SOCKETPAIR => "socketpair",
        SETSOCKOPT => "setsockopt",
        GETSOCKOPT => "getsockopt",
        CLONE => "clone",
        FORK => "fork",
        VFORK => "vfork",
        EXECVE => "execve",
        EXIT => "exit",
        WAIT4 => "wait4",
        KILL => "kill",
        UNAME => "uname",
        SEMGET => "semget",
        SEMOP => "semop",
        SEMCTL => "semctl",
        SHMDT => "shmdt",
        MSGGET => "msgget",
        MSGSND => "msgsnd",
        MSGRCV => "msgrcv",
        MSGCTL => "msgctl",
        FCNTL => "fcntl",
        FLOCK => "flock",
        FSYNC => "fsync",
        FDATASYNC => "fdatasync",
        TRUNCATE => "truncate",
        FTRUNCATE => "ftruncate",
        GETDENTS => "getdents",
        GETCWD => "getcwd",
        CHDIR => "chdir",
        FCHDIR => "fchdir",
        RENAME => "rename",
        MKDIR => "mkdir",
        RMDIR => "rmdir",
        CREAT => "creat",
        LINK => "link",
        UNLINK => "unlink",
        SYMLINK => "symlink",
        READLINK => "readlink",
        CHMOD => "chmod",
        FCHMOD => "fchmod",
        CHOWN => "chown",
        FCHOWN => "fchown",
        LCHOWN => "lchown",
        UMASK => "umask",
        GETTIMEOFDAY => "gettimeofday",
        GETRLIMIT => "getrlimit",
        GETRUSAGE => "getrusage",
        SYSINFO => "sysinfo",
        TIMES => "times",
        PTRACE => "ptrace",
        GETUID => "getuid",
        SYSLOG => "syslog",
        GETGID => "getgid",
        SETUID => "setuid",
        SETGID => "setgid",
        GETEUID => "geteuid",
        GETEGID => "getegid",
        SETPGID => "setpgid",
        GETPPID => "getppid",
        GETPGRP => "getpgrp",
        SETSID => "setsid",
        SETREUID => "setreuid",
        SETREGID => "setregid",
        GETGROUPS => "getgroups",
        SETGROUPS => "setgroups",
        SETRESUID => "setresuid",
        GETRESUID => "getresuid",
        SETRESGID => "setresgid",
        GETRESGID => "getresgid",
        GETPGID => "getpgid",
        SETFSUID => "setfsuid",
        SETFSGID => "setfsgid",
        GETSID => "getsid",
        CAPGET => "capget",
        CAPSET => "capset",
        RT_SIGPENDING => "rt_sigpending",
        RT_SIGTIMEDWAIT => "rt_sigtimedwait",
        RT_SIGQUEUEINFO => "rt_sigqueueinfo",
        RT_SIGSUSPEND => "rt_sigsuspend",
        SIGALTSTACK => "sigaltstack",
        UTIME => "utime",
        MKNOD => "mknod",
        USELIB => "uselib",
        PERSONALITY => "personality",
        USTAT => "ustat",
        STATFS => "statfs",
        FSTATFS => "fstatfs",
        SYSFS => "sysfs",
        GETPRIORITY => "getpriority",
        SETPRIORITY => "setpriority",
        SCHED_SETPARAM => "sched_setparam",
        SCHED_GETPARAM => "sched_getparam",
        SCHED_SETSCHEDULER => "sched_setscheduler",
        SCHED_GETSCHEDULER => "sched_getscheduler",
        SCHED_GET_PRIORITY_MAX => "sched_get_priority_max",
        SCHED_GET_PRIORITY_MIN => "sched_get_priority_min",
        SCHED_RR_GET_INTERVAL => "sched_rr_get_interval",
        MLOCK => "mlock",
        MUNLOCK => "munlock",
        MLOCKALL => "mlockall",
        MUNLOCKALL => "munlockall",
        VHANGUP => "vhangup",
        MODIFY_LDT => "modify_ldt",
        PIVOT_ROOT => "pivot_root",
        _SYSCTL => "_sysctl",
        PRCTL => "prctl",
        ARCH_PRCTL => "arch_prctl",
        ADJTIMEX => "adjtimex",
        SETRLIMIT => "setrlimit",
        CHROOT => "chroot",
        SYNC => "sync",
        ACCT => "acct",
        SETTIMEOFDAY => "settimeofday",
        MOUNT => "mount",
        UMOUNT2 => "umount2",
        SWAPON => "swapon",
        SWAPOFF => "swapoff",
        REBOOT => "reboot",
        SETHOSTNAME => "sethostname",
        SETDOMAINNAME => "setdomainname",
        IOPL => "iopl",
        IOPERM => "ioperm",
        CREATE_MODULE => "create_module",
        INIT_MODULE => "init_module",
        DELETE_MODULE => "delete_module",
        GET_KERNEL_SYMS => "get_kernel_syms",
        QUERY_MODULE => "query_module",
        QUOTACTL => "quotactl",
        NFSSERVCTL => "nfsservctl",
        GETPMSG => "getpmsg",
        PUTPMSG => "putpmsg",
        AFS_SYSCALL => "afs_syscall",
        TUXCALL => "tuxcall",
        SECURITY => "security",
        GETTID => "gettid",
        READAHEAD => "readahead",
        SETXATTR => "setxattr",
        LSETXATTR => "lsetxattr",
        FSETXATTR => "fsetxattr",
        GETXATTR => "getxattr",
        LGETXATTR => "lgetxattr",
        FGETXATTR => "fgetxattr",
        LISTXATTR => "listxattr",
        LLISTXATTR => "llistxattr",
        FLISTXATTR => "flistxattr",
        REMOVEXATTR => "removexattr",
        LREMOVEXATTR => "lremovexattr",
        FREMOVEXATTR => "fremovexattr",
        TKILL => "tkill",
        TIME => "time",
        FUTEX => "futex",
        SCHED_SETAFFINITY => "sched_setaffinity",
        SCHED_GETAFFINITY => "sched_getaffinity",
        SET_THREAD_AREA => "set_thread_area",
        IO_SETUP => "io_setup",
        IO_DESTROY => "io_destroy",
        IO_GETEVENTS => "io_getevents",
        IO_SUBMIT => "io_submit",
        IO_CANCEL => "io_cancel",
        GET_THREAD_AREA => "get_thread_area",
        LOOKUP_DCOOKIE => "lookup_dcookie",
        EPOLL_CREATE => "epoll_create",
        EPOLL_CTL_OLD => "epoll_ctl_old",
        EPOLL_WAIT_OLD => "epoll_wait_old",
        REMAP_FILE_PAGES => "remap_file_pages",
        GETDENTS64 => "getdents64",
        SET_TID_ADDRESS => "set_tid_address",
        RESTART_SYSCALL => "restart_syscall",
        SEMTIMEDOP => "semtimedop",
        FADVISE64 => "fadvise64",
        TIMER_CREATE => "timer_create",
        TIMER_SETTIME => "timer_settime",
        TIMER_GETTIME => "timer_gettime",
        TIMER_GETOVERRUN => "timer_getoverrun",
        TIMER_DELETE => "timer_delete",
        CLOCK_SETTIME => "clock_settime",
        CLOCK_GETTIME => "clock_gettime",
        CLOCK_GETRES => "clock_getres",
        CLOCK_NANOSLEEP => "clock_nanosleep",
        EXIT_GROUP => "exit_group",
        EPOLL_WAIT => "epoll_wait",
        EPOLL_CTL => "epoll_ctl",
        TGKILL => "tgkill",
        UTIMES => "utimes",
        VSERVER => "vserver",
        MBIND => "mbind",
        SET_MEMPOLICY => "set_mempolicy",
        GET_MEMPOLICY => "get_mempolicy",
        MQ_OPEN => "mq_open",
        MQ_UNLINK => "mq_unlink",
        MQ_TIMEDSEND => "mq_timedsend",
        MQ_TIMEDRECEIVE => "mq_timedreceive",
        MQ_NOTIFY => "mq_notify",
        MQ_GETSETATTR => "mq_getsetattr",
        KEXEC_LOAD => "kexec_load",
        WAITID => "waitid",
        ADD_KEY => "add_key",
        REQUEST_KEY => "request_key",
        KEYCTL => "keyctl",
        IOPRIO_SET => "ioprio_set",
        IOPRIO_GET => "ioprio_get",
        INOTIFY_INIT => "inotify_init",
        INOTIFY_ADD_WATCH => "inotify_add_watch",
        INOTIFY_RM_WATCH => "inotify_rm_watch",
        MIGRATE_PAGES => "migrate_pages",
        OPENAT => "openat",
        MKDIRAT => "mkdirat",
        MKNODAT => "mknodat",
        FCHOWNAT => "fchownat",
        FUTIMESAT => "futimesat",
        NEWFSTATAT => "newfstatat",
        UNLINKAT => "unlinkat",
        RENAMEAT => "renameat",
        LINKAT => "linkat",
        SYMLINKAT => "symlinkat",
        READLINKAT => "readlinkat",
        FCHMODAT => "fchmodat",
        FACCESSAT => "faccessat",
        PSELECT6 => "pselect6",
        PPOLL => "ppoll",
        UNSHARE => "unshare",
        SET_ROBUST_LIST => "set_robust_list",
        GET_ROBUST_LIST => "get_robust_list",
        SPLICE => "splice",
        TEE => "tee",
        SYNC_FILE_RANGE => "sync_file_range",
        VMSPLICE => "vmsplice",
        MOVE_PAGES => "move_pages",
        UTIMENSAT => "utimensat",
        EPOLL_PWAIT => "epoll_pwait",
        SIGNALFD => "signalfd",
        TIMERFD_CREATE => "timerfd_create",
        EVENTFD => "eventfd",
        FALLOCATE => "fallocate",
        TIMERFD_SETTIME => "timerfd_settime",
        TIMERFD_GETTIME => "timerfd_gettime",
        ACCEPT4 => "accept4",
        SIGNALFD4 => "signalfd4",
        EVENTFD2 => "eventfd2",
        EPOLL_CREATE1 => "epoll_create1",
        DUP3 => "dup3",
        PIPE2 => "pipe2",
        INOTIFY_INIT1 => "inotify_init1",
        PREADV => "preadv",
        PWRITEV => "pwritev",
        RT_TGSIGQUEUEINFO => "rt_tgsigqueueinfo",
        PERF_EVENT_OPEN => "perf_event_open",
        RECVMMSG => "recvmmsg",
        FANOTIFY_INIT => "fanotify_init",
        FANOTIFY_MARK => "fanotify_mark",
        PRLIMIT64 => "prlimit64",
        NAME_TO_HANDLE_AT => "name_to_handle_at",
        OPEN_BY_HANDLE_AT => "open_by_handle_at",
        CLOCK_ADJTIME => "clock_adjtime",
        SYNCFS => "syncfs",
        SENDMMSG => "sendmmsg",
        SETNS => "setns",
        GETCPU => "getcpu",
        PROCESS_VM_READV => "process_vm_readv",
        PROCESS_VM_WRITEV => "process_vm_writev",
        KCMP => "kcmp",
        FINIT_MODULE => "finit_module",
        SCHED_SETATTR => "sched_setattr",
        SCHED_GETATTR => "sched_getattr",
        RENAMEAT2 => "renameat2",
        SECCOMP => "seccomp",
        GETRANDOM => "getrandom",
        MEMFD_CREATE => "memfd_create",
        KEXEC_FILE_LOAD => "kexec_file_load",
        BPF => "bpf",
        EXECVEAT => "execveat",
        USERFAULTFD => "userfaultfd",
        MEMBARRIER => "membarrier",
        MLOCK2 => "mlock2",
        COPY_FILE_RANGE => "copy_file_range",
        PREADV2 => "preadv2",
        PWRITEV2 => "pwritev2",
        PKEY_MPROTECT => "pkey_mprotect",
        PKEY_ALLOC => "pkey_alloc",
        PKEY_FREE => "pkey_free",
        STATX => "statx",
        IO_PGETEVENTS => "io_pgetevents",
        RSEQ => "rseq",
        PIDFD_SEND_SIGNAL => "pidfd_send_signal",
        IO_URING_SETUP => "io_uring_setup",
        IO_URING_ENTER => "io_uring_enter",
        IO_URING_REGISTER => "io_uring_register",
        OPEN_TREE => "open_tree",
        MOVE_MOUNT => "move_mount",
        FSOPEN => "fsopen",
        FSCONFIG => "fsconfig",
        FSMOUNT => "fsmount",
        FSPICK => "fspick",
        PIDFD_OPEN => "pidfd_open",
        CLONE3 => "clone3",
        CLOSE_RANGE => "close_range",
        OPENAT2 => "openat2",
        PIDFD_GETFD => "pidfd_getfd",
        FACCESSAT2 => "faccessat2",
        PROCESS_MADVISE => "process_madvise",
        EPOLL_PWAIT2 => "epoll_pwait2",
        MOUNT_SETATTR => "mount_setattr",
        QUOTACTL_FD => "quotactl_fd",
        LANDLOCK_CREATE_RULESET => "landlock_create_ruleset",
        LANDLOCK_ADD_RULE => "landlock_add_rule",
        LANDLOCK_RESTRICT_SELF => "landlock_restrict_self",
        MEMFD_SECRET => "memfd_secret",
        PROCESS_MRELEASE => "process_mrelease",
        FUTEX_WAITV => "futex_waitv",
        SET_MEMPOLICY_HOME_NODE => "set_mempolicy_home_node",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_numbers() {
        assert_eq!(name(0), "read");
        assert_eq!(name(60), "exit");
        assert_eq!(name(202), "futex");
        assert_eq!(name(334), "rseq");
        assert_eq!(name(435), "clone3");
        assert_eq!(name(335), "unknown");
        assert_eq!(name(u64::MAX), "unknown");
    }

    #[test]
    fn every_number_below_335_has_a_name() {
        for nr in 0..335 {
            assert_ne!(name(nr), "unknown", "system call {nr}");
        }
    }

    #[test]
    fn numbers_agree_with_libc() {
        // libc lacks a few obsolete or rare calls: create_module, get_kernel_syms,
        // query_module, io_pgetevents.
        assert_eq!(READ as i64, libc::SYS_read);
        assert_eq!(WRITE as i64, libc::SYS_write);
        assert_eq!(OPEN as i64, libc::SYS_open);
        assert_eq!(CLOSE as i64, libc::SYS_close);
        assert_eq!(STAT as i64, libc::SYS_stat);
        assert_eq!(FSTAT as i64, libc::SYS_fstat);
        assert_eq!(LSTAT as i64, libc::SYS_lstat);
        assert_eq!(POLL as i64, libc::SYS_poll);
        assert_eq!(LSEEK as i64, libc::SYS_lseek);
        assert_eq!(MMAP as i64, libc::SYS_mmap);
        assert_eq!(MPROTECT as i64, libc::SYS_mprotect);
        assert_eq!(MUNMAP as i64, libc::SYS_munmap);
        assert_eq!(BRK as i64, libc::SYS_brk);
        assert_eq!(RT_SIGACTION as i64, libc::SYS_rt_sigaction);
        assert_eq!(RT_SIGPROCMASK as i64, libc::SYS_rt_sigprocmask);
        assert_eq!(RT_SIGRETURN as i64, libc::SYS_rt_sigreturn);
        assert_eq!(IOCTL as i64, libc::SYS_ioctl);
        assert_eq!(PREAD64 as i64, libc::SYS_pread64);
        assert_eq!(PWRITE64 as i64, libc::SYS_pwrite64);
        assert_eq!(READV as i64, libc::SYS_readv);
        assert_eq!(WRITEV as i64, libc::SYS_writev);
        assert_eq!(ACCESS as i64, libc::SYS_access);
        assert_eq!(PIPE as i64, libc::SYS_pipe);
        assert_eq!(SELECT as i64, libc::SYS_select);
        assert_eq!(SCHED_YIELD as i64, libc::SYS_sched_yield);
        assert_eq!(MREMAP as i64, libc::SYS_mremap);
        assert_eq!(MSYNC as i64, libc::SYS_msync);
        assert_eq!(MINCORE as i64, libc::SYS_mincore);
        assert_eq!(MADVISE as i64, libc::SYS_madvise);
        assert_eq!(SHMGET as i64, libc::SYS_shmget);
        assert_eq!(SHMAT as i64, libc::SYS_shmat);
        assert_eq!(SHMCTL as i64, libc::SYS_shmctl);
        assert_eq!(DUP as i64, libc::SYS_dup);
        assert_eq!(DUP2 as i64, libc::SYS_dup2);
        assert_eq!(PAUSE as i64, libc::SYS_pause);
        assert_eq!(NANOSLEEP as i64, libc::SYS_nanosleep);
        assert_eq!(GETITIMER as i64, libc::SYS_getitimer);
        assert_eq!(ALARM as i64, libc::SYS_alarm);
        assert_eq!(SETITIMER as i64, libc::SYS_setitimer);
        assert_eq!(GETPID as i64, libc::SYS_getpid);
        assert_eq!(SENDFILE as i64, libc::SYS_sendfile);
        assert_eq!(SOCKET as i64, libc::SYS_socket);
        assert_eq!(CONNECT as i64, libc::SYS_connect);
        assert_eq!(ACCEPT as i64, libc::SYS_accept);
        assert_eq!(SENDTO as i64, libc::SYS_sendto);
        assert_eq!(RECVFROM as i64, libc::SYS_recvfrom);
        assert_eq!(SENDMSG as i64, libc::SYS_sendmsg);
        assert_eq!(RECVMSG as i64, libc::SYS_recvmsg);
        assert_eq!(SHUTDOWN as i64, libc::SYS_shutdown);
        assert_eq!(BIND as i64, libc::SYS_bind);
        assert_eq!(LISTEN as i64, libc::SYS_listen);
        assert_eq!(GETSOCKNAME as i64, libc::SYS_getsockname);
        assert_eq!(GETPEERNAME as i64, libc::SYS_getpeername);
        assert_eq!(SOCKETPAIR as i64, libc::SYS_socketpair);
        assert_eq!(SETSOCKOPT as i64, libc::SYS_setsockopt);
        assert_eq!(GETSOCKOPT as i64, libc::SYS_getsockopt);
        assert_eq!(CLONE as i64, libc::SYS_clone);
        assert_eq!(FORK as i64, libc::SYS_fork);
        assert_eq!(VFORK as i64, libc::SYS_vfork);
        assert_eq!(EXECVE as i64, libc::SYS_execve);
        assert_eq!(EXIT as i64, libc::SYS_exit);
        assert_eq!(WAIT4 as i64, libc::SYS_wait4);
        assert_eq!(KILL as i64, libc::SYS_kill);
        assert_eq!(UNAME as i64, libc::SYS_uname);
        assert_eq!(SEMGET as i64, libc::SYS_semget);
        assert_eq!(SEMOP as i64, libc::SYS_semop);
        assert_eq!(SEMCTL as i64, libc::SYS_semctl);
        assert_eq!(SHMDT as i64, libc::SYS_shmdt);
        assert_eq!(MSGGET as i64, libc::SYS_msgget);
        assert_eq!(MSGSND as i64, libc::SYS_msgsnd);
        assert_eq!(MSGRCV as i64, libc::SYS_msgrcv);
        assert_eq!(MSGCTL as i64, libc::SYS_msgctl);
        assert_eq!(FCNTL as i64, libc::SYS_fcntl);
        assert_eq!(FLOCK as i64, libc::SYS_flock);
        assert_eq!(FSYNC as i64, libc::SYS_fsync);
        assert_eq!(FDATASYNC as i64, libc::SYS_fdatasync);
        assert_eq!(TRUNCATE as i64, libc::SYS_truncate);
        assert_eq!(FTRUNCATE as i64, libc::SYS_ftruncate);
        assert_eq!(GETDENTS as i64, libc::SYS_getdents);
        assert_eq!(GETCWD as i64, libc::SYS_getcwd);
        assert_eq!(CHDIR as i64, libc::SYS_chdir);
        assert_eq!(FCHDIR as i64, libc::SYS_fchdir);
        assert_eq!(RENAME as i64, libc::SYS_rename);
        assert_eq!(MKDIR as i64, libc::SYS_mkdir);
        assert_eq!(RMDIR as i64, libc::SYS_rmdir);
        assert_eq!(CREAT as i64, libc::SYS_creat);
        assert_eq!(LINK as i64, libc::SYS_link);
        assert_eq!(UNLINK as i64, libc::SYS_unlink);
        assert_eq!(SYMLINK as i64, libc::SYS_symlink);
        assert_eq!(READLINK as i64, libc::SYS_readlink);
        assert_eq!(CHMOD as i64, libc::SYS_chmod);
        assert_eq!(FCHMOD as i64, libc::SYS_fchmod);
        assert_eq!(CHOWN as i64, libc::SYS_chown);
        assert_eq!(FCHOWN as i64, libc::SYS_fchown);
        assert_eq!(LCHOWN as i64, libc::SYS_lchown);
        assert_eq!(UMASK as i64, libc::SYS_umask);
        assert_eq!(GETTIMEOFDAY as i64, libc::SYS_gettimeofday);
        assert_eq!(GETRLIMIT as i64, libc::SYS_getrlimit);
        assert_eq!(GETRUSAGE as i64, libc::SYS_getrusage);
        assert_eq!(SYSINFO as i64, libc::SYS_sysinfo);
        assert_eq!(TIMES as i64, libc::SYS_times);
        assert_eq!(PTRACE as i64, libc::SYS_ptrace);
        assert_eq!(GETUID as i64, libc::SYS_getuid);
        assert_eq!(SYSLOG as i64, libc::SYS_syslog);
        assert_eq!(GETGID as i64, libc::SYS_getgid);
        assert_eq!(SETUID as i64, libc::SYS_setuid);
        assert_eq!(SETGID as i64, libc::SYS_setgid);
        assert_eq!(GETEUID as i64, libc::SYS_geteuid);
        assert_eq!(GETEGID as i64, libc::SYS_getegid);
        assert_eq!(SETPGID as i64, libc::SYS_setpgid);
        assert_eq!(GETPPID as i64, libc::SYS_getppid);
        assert_eq!(GETPGRP as i64, libc::SYS_getpgrp);
        assert_eq!(SETSID as i64, libc::SYS_setsid);
        assert_eq!(SETREUID as i64, libc::SYS_setreuid);
        assert_eq!(SETREGID as i64, libc::SYS_setregid);
        assert_eq!(GETGROUPS as i64, libc::SYS_getgroups);
        assert_eq!(SETGROUPS as i64, libc::SYS_setgroups);
        assert_eq!(SETRESUID as i64, libc::SYS_setresuid);
        assert_eq!(GETRESUID as i64, libc::SYS_getresuid);
        assert_eq!(SETRESGID as i64, libc::SYS_setresgid);
        assert_eq!(GETRESGID as i64, libc::SYS_getresgid);
        assert_eq!(GETPGID as i64, libc::SYS_getpgid);
        assert_eq!(SETFSUID as i64, libc::SYS_setfsuid);
        assert_eq!(SETFSGID as i64, libc::SYS_setfsgid);
        assert_eq!(GETSID as i64, libc::SYS_getsid);
        assert_eq!(CAPGET as i64, libc::SYS_capget);
        assert_eq!(CAPSET as i64, libc::SYS_capset);
        assert_eq!(RT_SIGPENDING as i64, libc::SYS_rt_sigpending);
        assert_eq!(RT_SIGTIMEDWAIT as i64, libc::SYS_rt_sigtimedwait);
        assert_eq!(RT_SIGQUEUEINFO as i64, libc::SYS_rt_sigqueueinfo);
        assert_eq!(RT_SIGSUSPEND as i64, libc::SYS_rt_sigsuspend);
        assert_eq!(SIGALTSTACK as i64, libc::SYS_sigaltstack);
        assert_eq!(UTIME as i64, libc::SYS_utime);
        assert_eq!(MKNOD as i64, libc::SYS_mknod);
        assert_eq!(USELIB as i64, libc::SYS_uselib);
        assert_eq!(PERSONALITY as i64, libc::SYS_personality);
        assert_eq!(USTAT as i64, libc::SYS_ustat);
        assert_eq!(STATFS as i64, libc::SYS_statfs);
        assert_eq!(FSTATFS as i64, libc::SYS_fstatfs);
        assert_eq!(SYSFS as i64, libc::SYS_sysfs);
        assert_eq!(GETPRIORITY as i64, libc::SYS_getpriority);
        assert_eq!(SETPRIORITY as i64, libc::SYS_setpriority);
        assert_eq!(SCHED_SETPARAM as i64, libc::SYS_sched_setparam);
        assert_eq!(SCHED_GETPARAM as i64, libc::SYS_sched_getparam);
        assert_eq!(SCHED_SETSCHEDULER as i64, libc::SYS_sched_setscheduler);
        assert_eq!(SCHED_GETSCHEDULER as i64, libc::SYS_sched_getscheduler);
        assert_eq!(
            SCHED_GET_PRIORITY_MAX as i64,
            libc::SYS_sched_get_priority_max
        );
        assert_eq!(
            SCHED_GET_PRIORITY_MIN as i64,
            libc::SYS_sched_get_priority_min
        );
        assert_eq!(
            SCHED_RR_GET_INTERVAL as i64,
            libc::SYS_sched_rr_get_interval
        );
        assert_eq!(MLOCK as i64, libc::SYS_mlock);
        assert_eq!(MUNLOCK as i64, libc::SYS_munlock);
        assert_eq!(MLOCKALL as i64, libc::SYS_mlockall);
        assert_eq!(MUNLOCKALL as i64, libc::SYS_munlockall);
        assert_eq!(VHANGUP as i64, libc::SYS_vhangup);
        assert_eq!(MODIFY_LDT as i64, libc::SYS_modify_ldt);
        assert_eq!(PIVOT_ROOT as i64, libc::SYS_pivot_root);
        assert_eq!(_SYSCTL as i64, libc::SYS__sysctl);
        assert_eq!(PRCTL as i64, libc::SYS_prctl);
        assert_eq!(ARCH_PRCTL as i64, libc::SYS_arch_prctl);
        assert_eq!(ADJTIMEX as i64, libc::SYS_adjtimex);
        assert_eq!(SETRLIMIT as i64, libc::SYS_setrlimit);
        assert_eq!(CHROOT as i64, libc::SYS_chroot);
        assert_eq!(SYNC as i64, libc::SYS_sync);
        assert_eq!(ACCT as i64, libc::SYS_acct);
        assert_eq!(SETTIMEOFDAY as i64, libc::SYS_settimeofday);
        assert_eq!(MOUNT as i64, libc::SYS_mount);
        assert_eq!(UMOUNT2 as i64, libc::SYS_umount2);
        assert_eq!(SWAPON as i64, libc::SYS_swapon);
        assert_eq!(SWAPOFF as i64, libc::SYS_swapoff);
        assert_eq!(REBOOT as i64, libc::SYS_reboot);
        assert_eq!(SETHOSTNAME as i64, libc::SYS_sethostname);
        assert_eq!(SETDOMAINNAME as i64, libc::SYS_setdomainname);
        assert_eq!(IOPL as i64, libc::SYS_iopl);
        assert_eq!(IOPERM as i64, libc::SYS_ioperm);
        assert_eq!(INIT_MODULE as i64, libc::SYS_init_module);
        assert_eq!(DELETE_MODULE as i64, libc::SYS_delete_module);
        assert_eq!(QUOTACTL as i64, libc::SYS_quotactl);
        assert_eq!(NFSSERVCTL as i64, libc::SYS_nfsservctl);
        assert_eq!(GETPMSG as i64, libc::SYS_getpmsg);
        assert_eq!(PUTPMSG as i64, libc::SYS_putpmsg);
        assert_eq!(AFS_SYSCALL as i64, libc::SYS_afs_syscall);
        assert_eq!(TUXCALL as i64, libc::SYS_tuxcall);
        assert_eq!(SECURITY as i64, libc::SYS_security);
        assert_eq!(GETTID as i64, libc::SYS_gettid);
        assert_eq!(READAHEAD as i64, libc::SYS_readahead);
        assert_eq!(SETXATTR as i64, libc::SYS_setxattr);
        assert_eq!(LSETXATTR as i64, libc::SYS_lsetxattr);
        assert_eq!(FSETXATTR as i64, libc::SYS_fsetxattr);
        assert_eq!(GETXATTR as i64, libc::SYS_getxattr);
        assert_eq!(LGETXATTR as i64, libc::SYS_lgetxattr);
        assert_eq!(FGETXATTR as i64, libc::SYS_fgetxattr);
        assert_eq!(LISTXATTR as i64, libc::SYS_listxattr);
        assert_eq!(LLISTXATTR as i64, libc::SYS_llistxattr);
        assert_eq!(FLISTXATTR as i64, libc::SYS_flistxattr);
        assert_eq!(REMOVEXATTR as i64, libc::SYS_removexattr);
        assert_eq!(LREMOVEXATTR as i64, libc::SYS_lremovexattr);
        assert_eq!(FREMOVEXATTR as i64, libc::SYS_fremovexattr);
        assert_eq!(TKILL as i64, libc::SYS_tkill);
        assert_eq!(TIME as i64, libc::SYS_time);
        assert_eq!(FUTEX as i64, libc::SYS_futex);
        assert_eq!(SCHED_SETAFFINITY as i64, libc::SYS_sched_setaffinity);
        assert_eq!(SCHED_GETAFFINITY as i64, libc::SYS_sched_getaffinity);
        assert_eq!(SET_THREAD_AREA as i64, libc::SYS_set_thread_area);
        assert_eq!(IO_SETUP as i64, libc::SYS_io_setup);
        assert_eq!(IO_DESTROY as i64, libc::SYS_io_destroy);
        assert_eq!(IO_GETEVENTS as i64, libc::SYS_io_getevents);
        assert_eq!(IO_SUBMIT as i64, libc::SYS_io_submit);
        assert_eq!(IO_CANCEL as i64, libc::SYS_io_cancel);
        assert_eq!(GET_THREAD_AREA as i64, libc::SYS_get_thread_area);
        assert_eq!(LOOKUP_DCOOKIE as i64, libc::SYS_lookup_dcookie);
        assert_eq!(EPOLL_CREATE as i64, libc::SYS_epoll_create);
        assert_eq!(EPOLL_CTL_OLD as i64, libc::SYS_epoll_ctl_old);
        assert_eq!(EPOLL_WAIT_OLD as i64, libc::SYS_epoll_wait_old);
        assert_eq!(REMAP_FILE_PAGES as i64, libc::SYS_remap_file_pages);
        assert_eq!(GETDENTS64 as i64, libc::SYS_getdents64);
        assert_eq!(SET_TID_ADDRESS as i64, libc::SYS_set_tid_address);
        assert_eq!(RESTART_SYSCALL as i64, libc::SYS_restart_syscall);
        assert_eq!(SEMTIMEDOP as i64, libc::SYS_semtimedop);
        assert_eq!(FADVISE64 as i64, libc::SYS_fadvise64);
        assert_eq!(TIMER_CREATE as i64, libc::SYS_timer_create);
        assert_eq!(TIMER_SETTIME as i64, libc::SYS_timer_settime);
        assert_eq!(TIMER_GETTIME as i64, libc::SYS_timer_gettime);
        assert_eq!(TIMER_GETOVERRUN as i64, libc::SYS_timer_getoverrun);
        assert_eq!(TIMER_DELETE as i64, libc::SYS_timer_delete);
        assert_eq!(CLOCK_SETTIME as i64, libc::SYS_clock_settime);
        assert_eq!(CLOCK_GETTIME as i64, libc::SYS_clock_gettime);
        assert_eq!(CLOCK_GETRES as i64, libc::SYS_clock_getres);
        assert_eq!(CLOCK_NANOSLEEP as i64, libc::SYS_clock_nanosleep);
        assert_eq!(EXIT_GROUP as i64, libc::SYS_exit_group);
        assert_eq!(EPOLL_WAIT as i64, libc::SYS_epoll_wait);
        assert_eq!(EPOLL_CTL as i64, libc::SYS_epoll_ctl);
        assert_eq!(TGKILL as i64, libc::SYS_tgkill);
        assert_eq!(UTIMES as i64, libc::SYS_utimes);
        assert_eq!(VSERVER as i64, libc::SYS_vserver);
        assert_eq!(MBIND as i64, libc::SYS_mbind);
        assert_eq!(SET_MEMPOLICY as i64, libc::SYS_set_mempolicy);
        assert_eq!(GET_MEMPOLICY as i64, libc::SYS_get_mempolicy);
        assert_eq!(MQ_OPEN as i64, libc::SYS_mq_open);
        assert_eq!(MQ_UNLINK as i64, libc::SYS_mq_unlink);
        assert_eq!(MQ_TIMEDSEND as i64, libc::SYS_mq_timedsend);
        assert_eq!(MQ_TIMEDRECEIVE as i64, libc::SYS_mq_timedreceive);
        assert_eq!(MQ_NOTIFY as i64, libc::SYS_mq_notify);
        assert_eq!(MQ_GETSETATTR as i64, libc::SYS_mq_getsetattr);
        assert_eq!(KEXEC_LOAD as i64, libc::SYS_kexec_load);
        assert_eq!(WAITID as i64, libc::SYS_waitid);
        assert_eq!(ADD_KEY as i64, libc::SYS_add_key);
        assert_eq!(REQUEST_KEY as i64, libc::SYS_request_key);
        assert_eq!(KEYCTL as i64, libc::SYS_keyctl);
        assert_eq!(IOPRIO_SET as i64, libc::SYS_ioprio_set);
        assert_eq!(IOPRIO_GET as i64, libc::SYS_ioprio_get);
        assert_eq!(INOTIFY_INIT as i64, libc::SYS_inotify_init);
        assert_eq!(INOTIFY_ADD_WATCH as i64, libc::SYS_inotify_add_watch);
        assert_eq!(INOTIFY_RM_WATCH as i64, libc::SYS_inotify_rm_watch);
        assert_eq!(MIGRATE_PAGES as i64, libc::SYS_migrate_pages);
        assert_eq!(OPENAT as i64, libc::SYS_openat);
        assert_eq!(MKDIRAT as i64, libc::SYS_mkdirat);
        assert_eq!(MKNODAT as i64, libc::SYS_mknodat);
        assert_eq!(FCHOWNAT as i64, libc::SYS_fchownat);
        assert_eq!(FUTIMESAT as i64, libc::SYS_futimesat);
        assert_eq!(NEWFSTATAT as i64, libc::SYS_newfstatat);
        assert_eq!(UNLINKAT as i64, libc::SYS_unlinkat);
        assert_eq!(RENAMEAT as i64, libc::SYS_renameat);
        assert_eq!(LINKAT as i64, libc::SYS_linkat);
        assert_eq!(SYMLINKAT as i64, libc::SYS_symlinkat);
        assert_eq!(READLINKAT as i64, libc::SYS_readlinkat);
        assert_eq!(FCHMODAT as i64, libc::SYS_fchmodat);
        assert_eq!(FACCESSAT as i64, libc::SYS_faccessat);
        assert_eq!(PSELECT6 as i64, libc::SYS_pselect6);
        assert_eq!(PPOLL as i64, libc::SYS_ppoll);
        assert_eq!(UNSHARE as i64, libc::SYS_unshare);
        assert_eq!(SET_ROBUST_LIST as i64, libc::SYS_set_robust_list);
        assert_eq!(GET_ROBUST_LIST as i64, libc::SYS_get_robust_list);
        assert_eq!(SPLICE as i64, libc::SYS_splice);
        assert_eq!(TEE as i64, libc::SYS_tee);
        assert_eq!(SYNC_FILE_RANGE as i64, libc::SYS_sync_file_range);
        assert_eq!(VMSPLICE as i64, libc::SYS_vmsplice);
        assert_eq!(MOVE_PAGES as i64, libc::SYS_move_pages);
        assert_eq!(UTIMENSAT as i64, libc::SYS_utimensat);
        assert_eq!(EPOLL_PWAIT as i64, libc::SYS_epoll_pwait);
        assert_eq!(SIGNALFD as i64, libc::SYS_signalfd);
        assert_eq!(TIMERFD_CREATE as i64, libc::SYS_timerfd_create);
        assert_eq!(EVENTFD as i64, libc::SYS_eventfd);
        assert_eq!(FALLOCATE as i64, libc::SYS_fallocate);
        assert_eq!(TIMERFD_SETTIME as i64, libc::SYS_timerfd_settime);
        assert_eq!(TIMERFD_GETTIME as i64, libc::SYS_timerfd_gettime);
        assert_eq!(ACCEPT4 as i64, libc::SYS_accept4);
        assert_eq!(SIGNALFD4 as i64, libc::SYS_signalfd4);
        assert_eq!(EVENTFD2 as i64, libc::SYS_eventfd2);
        assert_eq!(EPOLL_CREATE1 as i64, libc::SYS_epoll_create1);
        assert_eq!(DUP3 as i64, libc::SYS_dup3);
        assert_eq!(PIPE2 as i64, libc::SYS_pipe2);
        assert_eq!(INOTIFY_INIT1 as i64, libc::SYS_inotify_init1);
        assert_eq!(PREADV as i64, libc::SYS_preadv);
        assert_eq!(PWRITEV as i64, libc::SYS_pwritev);
        assert_eq!(RT_TGSIGQUEUEINFO as i64, libc::SYS_rt_tgsigqueueinfo);
        assert_eq!(PERF_EVENT_OPEN as i64, libc::SYS_perf_event_open);
        assert_eq!(RECVMMSG as i64, libc::SYS_recvmmsg);
        assert_eq!(FANOTIFY_INIT as i64, libc::SYS_fanotify_init);
        assert_eq!(FANOTIFY_MARK as i64, libc::SYS_fanotify_mark);
        assert_eq!(PRLIMIT64 as i64, libc::SYS_prlimit64);
        assert_eq!(NAME_TO_HANDLE_AT as i64, libc::SYS_name_to_handle_at);
        assert_eq!(OPEN_BY_HANDLE_AT as i64, libc::SYS_open_by_handle_at);
        assert_eq!(CLOCK_ADJTIME as i64, libc::SYS_clock_adjtime);
        assert_eq!(SYNCFS as i64, libc::SYS_syncfs);
        assert_eq!(SENDMMSG as i64, libc::SYS_sendmmsg);
        assert_eq!(SETNS as i64, libc::SYS_setns);
        assert_eq!(GETCPU as i64, libc::SYS_getcpu);
        assert_eq!(PROCESS_VM_READV as i64, libc::SYS_process_vm_readv);
        assert_eq!(PROCESS_VM_WRITEV as i64, libc::SYS_process_vm_writev);
        assert_eq!(KCMP as i64, libc::SYS_kcmp);
        assert_eq!(FINIT_MODULE as i64, libc::SYS_finit_module);
        assert_eq!(SCHED_SETATTR as i64, libc::SYS_sched_setattr);
        assert_eq!(SCHED_GETATTR as i64, libc::SYS_sched_getattr);
        assert_eq!(RENAMEAT2 as i64, libc::SYS_renameat2);
        assert_eq!(SECCOMP as i64, libc::SYS_seccomp);
        assert_eq!(GETRANDOM as i64, libc::SYS_getrandom);
        assert_eq!(MEMFD_CREATE as i64, libc::SYS_memfd_create);
        assert_eq!(KEXEC_FILE_LOAD as i64, libc::SYS_kexec_file_load);
        assert_eq!(BPF as i64, libc::SYS_bpf);
        assert_eq!(EXECVEAT as i64, libc::SYS_execveat);
        assert_eq!(USERFAULTFD as i64, libc::SYS_userfaultfd);
        assert_eq!(MEMBARRIER as i64, libc::SYS_membarrier);
        assert_eq!(MLOCK2 as i64, libc::SYS_mlock2);
        assert_eq!(COPY_FILE_RANGE as i64, libc::SYS_copy_file_range);
        assert_eq!(PREADV2 as i64, libc::SYS_preadv2);
        assert_eq!(PWRITEV2 as i64, libc::SYS_pwritev2);
        assert_eq!(PKEY_MPROTECT as i64, libc::SYS_pkey_mprotect);
        assert_eq!(PKEY_ALLOC as i64, libc::SYS_pkey_alloc);
        assert_eq!(PKEY_FREE as i64, libc::SYS_pkey_free);
        assert_eq!(STATX as i64, libc::SYS_statx);
        assert_eq!(RSEQ as i64, libc::SYS_rseq);
        assert_eq!(PIDFD_SEND_SIGNAL as i64, libc::SYS_pidfd_send_signal);
        assert_eq!(IO_URING_SETUP as i64, libc::SYS_io_uring_setup);
        assert_eq!(IO_URING_ENTER as i64, libc::SYS_io_uring_enter);
        assert_eq!(IO_URING_REGISTER as i64, libc::SYS_io_uring_register);
        assert_eq!(OPEN_TREE as i64, libc::SYS_open_tree);
        assert_eq!(MOVE_MOUNT as i64, libc::SYS_move_mount);
        assert_eq!(FSOPEN as i64, libc::SYS_fsopen);
        assert_eq!(FSCONFIG as i64, libc::SYS_fsconfig);
        assert_eq!(FSMOUNT as i64, libc::SYS_fsmount);
        assert_eq!(FSPICK as i64, libc::SYS_fspick);
        assert_eq!(PIDFD_OPEN as i64, libc::SYS_pidfd_open);
        assert_eq!(CLONE3 as i64, libc::SYS_clone3);
        assert_eq!(CLOSE_RANGE as i64, libc::SYS_close_range);
        assert_eq!(OPENAT2 as i64, libc::SYS_openat2);
        assert_eq!(PIDFD_GETFD as i64, libc::SYS_pidfd_getfd);
        assert_eq!(FACCESSAT2 as i64, libc::SYS_faccessat2);
        assert_eq!(PROCESS_MADVISE as i64, libc::SYS_process_madvise);
        assert_eq!(EPOLL_PWAIT2 as i64, libc::SYS_epoll_pwait2);
        assert_eq!(MOUNT_SETATTR as i64, libc::SYS_mount_setattr);
        assert_eq!(QUOTACTL_FD as i64, libc::SYS_quotactl_fd);
        assert_eq!(
            LANDLOCK_CREATE_RULESET as i64,
            libc::SYS_landlock_create_ruleset
        );
        assert_eq!(LANDLOCK_ADD_RULE as i64, libc::SYS_landlock_add_rule);
        assert_eq!(
            LANDLOCK_RESTRICT_SELF as i64,
            libc::SYS_landlock_restrict_self
        );
        assert_eq!(MEMFD_SECRET as i64, libc::SYS_memfd_secret);
        assert_eq!(PROCESS_MRELEASE as i64, libc::SYS_process_mrelease);
        assert_eq!(FUTEX_WAITV as i64, libc::SYS_futex_waitv);
        assert_eq!(
            SET_MEMPOLICY_HOME_NODE as i64,
            libc::SYS_set_mempolicy_home_node
        );
    }
}
