//! A look at an ELF header, so that an image never ships a binary for the wrong machine.

use std::io::Read;

use crate::arch::Arch;

/// Why a binary is not an executable for the expected architecture.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{name} is not an ELF executable (it starts with {magic:02x?})")]
    NotElf { name: String, magic: Vec<u8> },
    #[error("{name} is not a 64-bit little-endian ELF binary")]
    WrongClass { name: String },
    #[error("{name} is an ELF file but not an executable (type {elf_type})")]
    NotExecutable { name: String, elf_type: u16 },
    #[error(
        "{name} is an ELF binary for {found}, but the image is for {expected} ({expected_systemd}); use the alloy-linux-{found_arch}.zip asset with --arch {found_arch}, or the {expected} asset"
    )]
    WrongArch {
        name: String,
        found: String,
        found_arch: String,
        expected: Arch,
        expected_systemd: &'static str,
    },
    #[error("reading {name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
}

/// Checks that `reader` starts with the header of a 64-bit little-endian ELF file for `arch`.
/// `name` is how errors refer to the file.
pub fn check_elf_arch(mut reader: impl Read, name: &str, arch: Arch) -> Result<(), ElfError> {
    let mut header = [0u8; 20];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ElfError::Io {
                    name: name.to_owned(),
                    source,
                });
            }
        }
    }
    if filled < 4 || header[..4] != *b"\x7fELF" {
        return Err(ElfError::NotElf {
            name: name.to_owned(),
            magic: header[..filled.min(4)].to_vec(),
        });
    }
    // EI_CLASS = 2 (64-bit), EI_DATA = 1 (little-endian).
    if filled < header.len() || header[4] != 2 || header[5] != 1 {
        return Err(ElfError::WrongClass {
            name: name.to_owned(),
        });
    }
    // ET_EXEC, or ET_DYN for position-independent executables.
    let elf_type = u16::from_le_bytes([header[16], header[17]]);
    if elf_type != 2 && elf_type != 3 {
        return Err(ElfError::NotExecutable {
            name: name.to_owned(),
            elf_type,
        });
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    if machine == arch.elf_machine() {
        return Ok(());
    }
    let (found, found_arch) = match Arch::from_elf_machine(machine) {
        Some(other) => (
            other.systemd_name().to_owned(),
            other.upstream_name().to_owned(),
        ),
        None => (format!("machine type {machine:#x}"), "<arch>".to_owned()),
    };
    Err(ElfError::WrongArch {
        name: name.to_owned(),
        found,
        found_arch,
        expected: arch,
        expected_systemd: arch.systemd_name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F', class, data, 1, 0];
        h.resize(16, 0);
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&machine.to_le_bytes());
        h.extend_from_slice(&[0; 44]);
        h
    }

    #[test]
    fn accepts_matching_machine() {
        check_elf_arch(&header(2, 1, 0x3e)[..], "x", Arch::Amd64).unwrap();
        check_elf_arch(&header(2, 1, 0xb7)[..], "x", Arch::Arm64).unwrap();
    }

    #[test]
    fn rejects_wrong_machine_with_both_names() {
        let err = check_elf_arch(&header(2, 1, 0xb7)[..], "alloy-linux-amd64", Arch::Amd64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("arm64") && err.contains("amd64"), "{err}");
    }

    #[test]
    fn rejects_non_elf_and_32_bit() {
        assert!(matches!(
            check_elf_arch(&b"#!/bin/sh\n"[..], "x", Arch::Amd64),
            Err(ElfError::NotElf { .. })
        ));
        assert!(matches!(
            check_elf_arch(&header(1, 1, 0x3e)[..], "x", Arch::Amd64),
            Err(ElfError::WrongClass { .. })
        ));
        assert!(matches!(
            check_elf_arch(&b""[..], "x", Arch::Amd64),
            Err(ElfError::NotElf { .. })
        ));
        let mut object = header(2, 1, 0x3e);
        object[16] = 1; // ET_REL
        assert!(matches!(
            check_elf_arch(&object[..], "x", Arch::Amd64),
            Err(ElfError::NotExecutable { elf_type: 1, .. })
        ));
    }
}
