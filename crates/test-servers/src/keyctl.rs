//! The Linux kernel keyutils calls that tests make themselves, to give the
//! test run keyrings of its own and to look at what a keychain store left
//! in them (by `libc::syscall`, beside the store's own calls).

use std::io;

/// `KEY_SPEC_PROCESS_KEYRING`: the calling process's keyring.
pub const PROCESS_KEYRING: i32 = -2;
/// `KEY_SPEC_SESSION_KEYRING`: the calling thread's session keyring.
pub const SESSION_KEYRING: i32 = -3;

fn check(res: libc::c_long) -> io::Result<i32> {
    if res < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(res as i32)
    }
}

/// Gives this process (and the threads it starts afterwards) a new,
/// anonymous session keyring, and a process keyring: the keyrings every
/// store of the test run works in. Call it before starting any thread.
pub fn own_session() -> io::Result<i32> {
    // SAFETY: a null name asks for an anonymous keyring.
    let ring = check(unsafe { libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<libc::c_char>()) })?;
    keyring_id(PROCESS_KEYRING, true)?;
    Ok(ring)
}

/// `KEYCTL_GET_KEYRING_ID`.
pub fn keyring_id(id: i32, create: bool) -> io::Result<i32> {
    // SAFETY: integer arguments.
    check(unsafe { libc::syscall(libc::SYS_keyctl, 0, id, libc::c_int::from(create)) })
}

/// The serials linked in a keyring.
pub fn links(ring: i32) -> io::Result<Vec<i32>> {
    let bytes = read(ring)?;
    Ok(bytes.chunks_exact(4).map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// `type;uid;gid;perm;description`.
pub fn describe(key: i32) -> io::Result<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length.
    let n = check(unsafe { libc::syscall(libc::SYS_keyctl, 6, key, buf.as_mut_ptr(), buf.len()) })? as usize;
    buf.truncate(n.min(buf.len()).saturating_sub(1));
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The key of type `ktype` described `name` linked in `ring` itself (not
/// in the keyrings below it).
pub fn find(ring: i32, ktype: &str, name: &str) -> Option<i32> {
    links(ring).ok()?.into_iter().find(|&key| {
        describe(key).is_ok_and(|desc| {
            let mut parts = desc.splitn(5, ';');
            parts.next() == Some(ktype) && parts.nth(3) == Some(name)
        })
    })
}

/// Every key reachable from `ring`, as `description` paths, depth first.
pub fn tree(ring: i32) -> Vec<String> {
    let mut out = Vec::new();
    walk(ring, "", &mut out);
    out
}

fn walk(ring: i32, prefix: &str, out: &mut Vec<String>) {
    for key in links(ring).unwrap_or_default() {
        let Ok(desc) = describe(key) else { continue };
        let mut parts = desc.splitn(5, ';');
        let ktype = parts.next().unwrap_or("").to_owned();
        let name = parts.nth(3).unwrap_or("").to_owned();
        let path = format!("{prefix}/{name}");
        out.push(format!("{ktype} {path}"));
        if ktype == "keyring" {
            walk(key, &path, out);
        }
    }
}

/// `add_key(2)` of a `user` key.
pub fn add_user_key(description: &str, payload: &[u8], ring: i32) -> io::Result<i32> {
    let desc = std::ffi::CString::new(description).unwrap();
    // SAFETY: valid pointers for the lengths given.
    check(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            ring,
        )
    })
}

/// `add_key(2)` of an empty keyring.
pub fn add_keyring(description: &str, ring: i32) -> io::Result<i32> {
    let desc = std::ffi::CString::new(description).unwrap();
    // SAFETY: valid C strings; a keyring has no payload.
    check(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"keyring".as_ptr(),
            desc.as_ptr(),
            std::ptr::null::<u8>(),
            0usize,
            ring,
        )
    })
}

/// `KEYCTL_INVALIDATE`.
pub fn invalidate(key: i32) -> io::Result<()> {
    // SAFETY: integer arguments.
    check(unsafe { libc::syscall(libc::SYS_keyctl, 21, key) }).map(drop)
}

/// `KEYCTL_CLEAR`.
pub fn clear(ring: i32) -> io::Result<()> {
    // SAFETY: integer arguments.
    check(unsafe { libc::syscall(libc::SYS_keyctl, 7, ring) }).map(drop)
}

/// Whether keyutils works here at all; when it does not, say why (the
/// caller fails under CI and skips loudly elsewhere).
pub fn usable() -> Result<(), String> {
    keyring_id(SESSION_KEYRING, true).map(drop).map_err(|e| format!("the kernel refuses keyctl here: {e}"))
}

/// `KEYCTL_SEARCH` of `ring` (and the keyrings in it) for a key.
pub fn search(ring: i32, ktype: &str, description: &str) -> io::Result<i32> {
    let (t, d) = (std::ffi::CString::new(ktype).unwrap(), std::ffi::CString::new(description).unwrap());
    // SAFETY: valid C strings; 0 = link the result nowhere.
    check(unsafe { libc::syscall(libc::SYS_keyctl, 10, ring, t.as_ptr(), d.as_ptr(), 0) })
}

/// `KEYCTL_READ`: a key's payload, or a keyring's serials as bytes.
pub fn read(key: i32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: the buffer is valid for its length.
    let n = check(unsafe { libc::syscall(libc::SYS_keyctl, 11, key, buf.as_mut_ptr(), buf.len()) })? as usize;
    buf.truncate(n.min(buf.len()));
    Ok(buf)
}
