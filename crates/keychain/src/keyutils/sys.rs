//! The few keyutils system calls the store makes, as thin safe wrappers.
//!
//! Errors are the raw `errno` as [`std::io::Error`]; `errors.rs` names them.

use std::ffi::{CStr, CString};
use std::io;

use zeroize::Zeroizing;

/// A key or keyring serial number, or one of the special ids below.
pub(crate) type Serial = i32;

/// `KEY_SPEC_PROCESS_KEYRING`.
pub(crate) const PROCESS_KEYRING: Serial = -2;
/// `KEY_SPEC_SESSION_KEYRING`.
pub(crate) const SESSION_KEYRING: Serial = -3;
/// `KEY_SPEC_USER_KEYRING`.
pub(crate) const USER_KEYRING: Serial = -4;

/// The `keyring` key type.
pub(crate) const KEYRING: &CStr = c"keyring";
/// The `user` key type: up to [`MAX_USER_PAYLOAD`] bytes, never empty.
pub(crate) const USER: &CStr = c"user";
/// The largest payload of one `user` key.
pub(crate) const MAX_USER_PAYLOAD: usize = 32_767;

/// Possessor and owner: view, read, write, search, link, setattr.
pub(crate) const PERM_OWNER_ALL: u32 = 0x3f3f_0000;

/// `KEYCTL_MOVE_EXCL`: fail with `EEXIST` instead of displacing a match.
pub(crate) const MOVE_EXCL: u32 = 1;

const KEYCTL_GET_KEYRING_ID: libc::c_int = 0;
const KEYCTL_SETPERM: libc::c_int = 5;
const KEYCTL_DESCRIBE: libc::c_int = 6;
const KEYCTL_UNLINK: libc::c_int = 9;
const KEYCTL_SEARCH: libc::c_int = 10;
const KEYCTL_SET_TIMEOUT: libc::c_int = 15;
const KEYCTL_READ: libc::c_int = 11;
const KEYCTL_INVALIDATE: libc::c_int = 21;
const KEYCTL_GET_PERSISTENT: libc::c_int = 22;
const KEYCTL_MOVE: libc::c_int = 30;

fn check(res: libc::c_long) -> io::Result<libc::c_long> {
    if res < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn serial(res: libc::c_long) -> io::Result<Serial> {
    Serial::try_from(res).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
}

/// `add_key(2)`: a new key (or keyring, with `payload` `None`) in `ring`.
pub(crate) fn add_key(
    ktype: &CStr,
    description: &str,
    payload: Option<&[u8]>,
    ring: Serial,
) -> io::Result<Serial> {
    let desc = cstring(description)?;
    let (ptr, len) = payload.map_or((std::ptr::null(), 0), |p| (p.as_ptr(), p.len()));
    // SAFETY: every pointer is valid for the length given; the kernel copies them.
    let res = unsafe {
        libc::syscall(libc::SYS_add_key, ktype.as_ptr(), desc.as_ptr(), ptr.cast::<libc::c_void>(), len, ring)
    };
    serial(check(res)?)
}

/// `KEYCTL_GET_KEYRING_ID`: the serial behind a special id.
pub(crate) fn keyring_id(id: Serial, create: bool) -> io::Result<Serial> {
    // SAFETY: plain integer arguments.
    let res =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, id, libc::c_int::from(create)) };
    serial(check(res)?)
}

/// `KEYCTL_GET_PERSISTENT` for the caller's uid, linked into `dest`.
pub(crate) fn persistent_keyring(dest: Serial) -> io::Result<Serial> {
    // SAFETY: plain integer arguments; -1 is "my uid".
    let res = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_GET_PERSISTENT, -1 as libc::c_int, dest) };
    serial(check(res)?)
}

/// `KEYCTL_SETPERM`.
pub(crate) fn set_perm(key: Serial, perm: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, key, perm) }).map(drop)
}

/// `KEYCTL_DESCRIBE`: `type;uid;gid;perm;description`.
pub(crate) fn describe(key: Serial) -> io::Result<String> {
    let bytes = read_buffer(KEYCTL_DESCRIBE, key)?;
    let text = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// `KEYCTL_SEARCH` of `ring` and the keyrings in it, breadth first, for a
/// key of `ktype` named `description`. `ENOKEY` when there is none.
pub(crate) fn search(ring: Serial, ktype: &CStr, description: &str) -> io::Result<Serial> {
    let desc = cstring(description)?;
    // SAFETY: valid C strings; 0 = link the result nowhere.
    let res =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SEARCH, ring, ktype.as_ptr(), desc.as_ptr(), 0) };
    serial(check(res)?)
}

/// `KEYCTL_READ` of a key: its payload, in a zeroizing buffer.
pub(crate) fn read(key: Serial) -> io::Result<Zeroizing<Vec<u8>>> {
    read_buffer(KEYCTL_READ, key)
}

/// `KEYCTL_READ` of a keyring: the serials linked in it.
pub(crate) fn links(ring: Serial) -> io::Result<Vec<Serial>> {
    let bytes = read_buffer(KEYCTL_READ, ring)?;
    Ok(bytes.chunks_exact(4).map(|c| Serial::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Calls `op` (READ or DESCRIBE) with a buffer that grows until it fits.
fn read_buffer(op: libc::c_int, key: Serial) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; 512]);
    loop {
        // SAFETY: the buffer is valid for its length; the kernel writes at most that.
        let res = unsafe { libc::syscall(libc::SYS_keyctl, op, key, buf.as_mut_ptr(), buf.len()) };
        let needed = usize::try_from(check(res)?).unwrap_or(usize::MAX);
        if needed <= buf.len() {
            buf.truncate(needed);
            return Ok(buf);
        }
        // Too small: the kernel said how much it needs. Zero the old one on drop.
        buf = Zeroizing::new(vec![0u8; needed]);
    }
}

/// `KEYCTL_UNLINK` of `key` from `ring`; `ENOENT` when it is not linked there.
pub(crate) fn unlink(key: Serial, ring: Serial) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_UNLINK, key, ring) }).map(drop)
}

/// `KEYCTL_SET_TIMEOUT`: the kernel expires the key `seconds` from now (0
/// would clear a timeout: never passed here).
pub(crate) fn set_timeout(key: Serial, seconds: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SET_TIMEOUT, key, seconds) }).map(drop)
}

/// `KEYCTL_INVALIDATE`: the key is gone at once for every keyring.
pub(crate) fn invalidate(key: Serial) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, key) }).map(drop)
}

/// `KEYCTL_MOVE` (Linux 5.1): one atomic step that links `key` into `to` and
/// unlinks it from `from`, displacing a key of the same type and description
/// in `to` — or, with [`MOVE_EXCL`], failing with `EEXIST` instead.
pub(crate) fn move_key(key: Serial, from: Serial, to: Serial, flags: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_MOVE, key, from, to, flags) }).map(drop)
}
