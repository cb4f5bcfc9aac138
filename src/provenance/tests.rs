//! The record of a fixed build, byte for byte; read back; and what reading refuses.

use std::path::PathBuf;

use super::predicate::BuilderVersion;
use super::record::BuiltDigests;
use super::*;
use crate::arch::Arch;
use crate::artifacts::BuildRequest;
use crate::build_info;
use crate::sysext::{Compression, ImageLayout};
use crate::upstream::zip_entry::ExtractedEntry;

/// The request of a server build of 1.17.1 for amd64, started by a `/rebuild` comment, from
/// an asset checked against both digests, with zstd at level 3 and an mtime.
fn request() -> BuildRequest {
    let version = "1.17.1".parse().unwrap();
    let mut request = BuildRequest::new(version, Arch::Amd64, PathBuf::from("/work/x.zip"));
    request.squashfs.compression = Compression::new("zstd", Some(3)).unwrap();
    request.squashfs.block_size = 1 << 20;
    request.squashfs.mtime = 1_700_000_000;
    request.origin = BuildOrigin {
        checked: Some(CheckedAsset {
            asset: "alloy-linux-amd64.zip".into(),
            sha256: "a".repeat(64),
            checked_against: vec![AssetCheck::AssetDigest, AssetCheck::ReleaseSha256Sums],
        }),
        builder: BuilderKind::Server,
        started_by: StartedBy {
            event: StartEvent::Comment,
            repository: Some("o/build".into()),
            issue: Some(3),
            comment: Some(77),
            user: Some("ann".into()),
            rebuild: true,
        },
        ..BuildOrigin::command_line(&request.version, Arch::Amd64)
    };
    request
}

/// The record of [`request`]'s build, with a fixed tool version.
fn fixed_record() -> Statement {
    let request = request();
    let layout = ImageLayout::sysext("alloy", Arch::Amd64, PathBuf::from("/work/binary"));
    let binary = ExtractedEntry {
        size: 4096,
        sha256: "b".repeat(64),
    };
    let mut record = record_of(
        &request,
        &layout,
        BuiltDigests {
            image_sha256: &"c".repeat(64),
            zip_sha256: &"a".repeat(64),
            binary: &binary,
        },
    );
    let builder = &mut record.predicate.run_details.builder;
    assert_eq!(
        builder.version,
        BuilderVersion {
            tool: build_info::VERSION.into(),
            source_revision: build_info::SOURCE_REVISION.into(),
        }
    );
    builder.version = BuilderVersion {
        tool: "0.1.0".into(),
        source_revision: "0123456789abcdef0123456789abcdef01234567".into(),
    };
    record
}

/// [`fixed_record`] as written; `unit` is the sha256 of the service unit in the image.
fn fixed_record_text(unit: &str) -> String {
    format!(
        r#"{{
  "_type": "https://in-toto.io/Statement/v1",
  "subject": [
    {{
      "name": "alloy-1.17.1-amd64.raw",
      "digest": {{
        "sha256": "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
      }}
    }}
  ],
  "predicateType": "https://slsa.dev/provenance/v1",
  "predicate": {{
    "buildDefinition": {{
      "buildType": "urn:alloy-sysext-automation:build-type:sysext-image:v1",
      "externalParameters": {{
        "upstream": {{
          "repository": "grafana/alloy",
          "tag": "v1.17.1",
          "asset": "alloy-linux-amd64.zip",
          "binary": "alloy-linux-amd64"
        }},
        "version": "1.17.1",
        "arch": "amd64",
        "image": {{
          "name": "alloy",
          "compression": "zstd",
          "compressionLevel": 3,
          "blockSize": 1048576,
          "sourceDateEpoch": 1700000000
        }}
      }},
      "internalParameters": {{
        "layout": [
          {{
            "path": "usr",
            "type": "directory",
            "mode": "0755"
          }},
          {{
            "path": "usr/lib",
            "type": "directory",
            "mode": "0755"
          }},
          {{
            "path": "usr/lib/extension-release.d",
            "type": "directory",
            "mode": "0755"
          }},
          {{
            "path": "usr/lib/systemd",
            "type": "directory",
            "mode": "0755"
          }},
          {{
            "path": "usr/lib/systemd/system",
            "type": "directory",
            "mode": "0755"
          }},
          {{
            "path": "usr/local",
            "type": "directory",
            "mode": "0755"
          }},
          {{
            "path": "usr/local/bin",
            "type": "directory",
            "mode": "0755"
          }},
          {{
            "path": "usr/lib/extension-release.d/extension-release.alloy",
            "type": "file",
            "mode": "0644",
            "sha256": "64cd68b39d4b16acf376e23a88008a8819879f48cdee1288acfb4be02d672de6"
          }},
          {{
            "path": "usr/lib/systemd/system/alloy.service",
            "type": "file",
            "mode": "0644",
            "sha256": "{unit}"
          }},
          {{
            "path": "usr/local/bin/alloy",
            "type": "file",
            "mode": "0755",
            "sha256": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
          }}
        ]
      }},
      "resolvedDependencies": [
        {{
          "name": "alloy-linux-amd64.zip",
          "digest": {{
            "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          }},
          "annotations": {{
            "checkedAgainst": [
              "assetDigest",
              "releaseSha256Sums"
            ]
          }}
        }},
        {{
          "name": "alloy-linux-amd64",
          "digest": {{
            "sha256": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
          }},
          "annotations": {{
            "extractedFrom": "alloy-linux-amd64.zip",
            "size": 4096
          }}
        }}
      ]
    }},
    "runDetails": {{
      "builder": {{
        "id": "urn:alloy-sysext-automation:builder:server",
        "version": {{
          "alloy-sysext-automation": "0.1.0",
          "sourceRevision": "0123456789abcdef0123456789abcdef01234567"
        }}
      }},
      "metadata": {{
        "alloysysext_startedBy": {{
          "event": "comment",
          "repository": "o/build",
          "issue": 3,
          "comment": 77,
          "user": "ann",
          "rebuild": true
        }}
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn the_record_of_a_build_is_written_the_same_to_the_byte() {
    let unit = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        crate::sysext::layout::ALLOY_SERVICE_UNIT,
    ));
    assert_eq!(fixed_record().to_json(), fixed_record_text(&unit));
}

#[test]
fn a_record_reads_back_as_written() {
    let record = fixed_record();
    let read = read_record(record.to_json().as_bytes()).unwrap();
    assert_eq!(read, record);
    assert_eq!(read.image().unwrap().name, "alloy-1.17.1-amd64.raw");
    let upstream = read.upstream_asset().unwrap();
    assert_eq!(
        upstream.describe(),
        format!(
            "grafana/alloy v1.17.1 alloy-linux-amd64.zip (sha256 {}, checked against the \
             release's asset digest and the release's SHA256SUMS)",
            "a".repeat(64)
        )
    );
    assert_eq!(read.binary_sha256(), Some("b".repeat(64).as_str()));
    assert_eq!(
        read.builder_version(),
        "0.1.0 (revision 0123456789abcdef0123456789abcdef01234567)"
    );
    assert_eq!(
        read.predicate.run_details.metadata.started_by.describe(),
        "comment by ann in o/build#3 (rebuild)"
    );
    // Fields it does not know are ignored, as in-toto's parsing rules ask.
    let mut value: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
    value["predicate"]["runDetails"]["byproducts"] = serde_json::json!([]);
    value["subject"][0]["digest"]["sha512"] = serde_json::json!("00");
    assert_eq!(read_record(value.to_string().as_bytes()).unwrap(), record);
}

#[test]
fn a_record_gives_back_the_settings_it_was_built_with() {
    let zip = PathBuf::from("/elsewhere/alloy-linux-amd64.zip");
    let rebuilt = fixed_record().build_request(zip.clone()).unwrap();
    let original = request();
    assert_eq!(rebuilt.version, original.version);
    assert_eq!(rebuilt.arch, original.arch);
    assert_eq!(rebuilt.zip, zip);
    assert_eq!(rebuilt.binary_entry, original.binary_entry);
    assert_eq!(rebuilt.image_name, original.image_name);
    assert_eq!(rebuilt.squashfs, original.squashfs);
    assert_eq!(rebuilt.image_file_name(), "alloy-1.17.1-amd64.raw");
    assert!(!rebuilt.compat_name);
    assert_eq!(rebuilt.origin.checked, original.origin.checked);
    assert_eq!(rebuilt.origin.repository, "grafana/alloy");
    assert_eq!(rebuilt.origin.tag, "v1.17.1");
}

/// The fixed record as JSON, changed by `change`, read back.
fn read_changed(change: impl FnOnce(&mut serde_json::Value)) -> Result<Statement, RecordError> {
    let mut value: serde_json::Value = serde_json::from_str(&fixed_record().to_json()).unwrap();
    change(&mut value);
    read_record(value.to_string().as_bytes())
}

#[test]
fn what_is_not_a_record_of_this_tool_is_refused_naming_why() {
    let error = |change: fn(&mut serde_json::Value)| read_changed(change).unwrap_err().to_string();
    assert_eq!(
        error(|v| v["_type"] = "https://in-toto.io/Statement/v0.1".into()),
        "its _type is \"https://in-toto.io/Statement/v0.1\", not https://in-toto.io/Statement/v1: \
         it is not an in-toto Statement v1"
    );
    assert_eq!(
        error(|v| {
            v.as_object_mut().unwrap().remove("_type");
        }),
        "its _type is missing, not https://in-toto.io/Statement/v1: it is not an in-toto \
         Statement v1"
    );
    assert_eq!(
        error(|v| v["predicateType"] = "https://slsa.dev/provenance/v0.2".into()),
        "its predicateType is \"https://slsa.dev/provenance/v0.2\", not \
         https://slsa.dev/provenance/v1: it is not a SLSA Provenance v1 record"
    );
    assert_eq!(
        error(|v| v["predicate"]["buildDefinition"]["buildType"] = 7.into()),
        format!("its buildType is 7, not {BUILD_TYPE}: it is not a record of this tool")
    );
    assert_eq!(
        error(|v| {
            let first = v["subject"][0].clone();
            v["subject"].as_array_mut().unwrap().push(first);
        }),
        "it names 2 subjects; a record of this tool names exactly one image"
    );
    assert_eq!(
        error(|v| v["subject"][0]["name"] = "alloy-1.17.0-amd64.raw".into()),
        "its subject is alloy-1.17.0-amd64.raw, but its parameters name the image \
         alloy-1.17.1-amd64.raw (extension name, version and architecture)"
    );
    assert_eq!(
        error(|v| v["subject"][0]["digest"]["sha256"] = "C".repeat(64).into()),
        format!(
            "the subject alloy-1.17.1-amd64.raw has sha256 \"{}\", which is not 64 lowercase \
             hex digits",
            "C".repeat(64)
        )
    );
    assert_eq!(
        error(|v| {
            v["predicate"]["buildDefinition"]["resolvedDependencies"]
                .as_array_mut()
                .unwrap()
                .remove(0);
        }),
        "its resolvedDependencies do not name alloy-linux-amd64.zip, which its parameters name"
    );
    assert!(
        error(|v| v["predicate"]["buildDefinition"]["externalParameters"]["arch"] = "sparc".into())
            .starts_with(
                "it does not hold the fields this tool's records hold: unknown architecture"
            )
    );
    assert!(
        read_record(b"not json")
            .unwrap_err()
            .to_string()
            .starts_with("it is not JSON: ")
    );
    // Settings that cannot be built are refused when a build is asked for.
    let record = read_changed(|v| {
        v["predicate"]["buildDefinition"]["externalParameters"]["image"]["blockSize"] = 1000.into()
    })
    .unwrap();
    assert_eq!(
        record
            .build_request(PathBuf::from("x.zip"))
            .unwrap_err()
            .to_string(),
        "its image settings cannot be built: block size 1000 is invalid: use a power of two \
         from 4096 (4 KiB) to 1048576 (1 MiB)"
    );
}

#[test]
fn a_zip_given_as_a_file_is_recorded_as_not_checked() {
    let version = "1.2.3".parse().unwrap();
    let request = BuildRequest::new(version, Arch::Arm64, PathBuf::from("z.zip"));
    let layout = ImageLayout::sysext("alloy", Arch::Arm64, PathBuf::from("b"));
    let binary = ExtractedEntry {
        size: 1,
        sha256: "b".repeat(64),
    };
    let record = record_of(
        &request,
        &layout,
        BuiltDigests {
            image_sha256: &"c".repeat(64),
            zip_sha256: &"d".repeat(64),
            binary: &binary,
        },
    );
    let read = read_record(record.to_json().as_bytes()).unwrap();
    let upstream = read.upstream_asset().unwrap();
    assert_eq!(upstream.asset, "alloy-linux-arm64.zip");
    assert_eq!(upstream.sha256, "d".repeat(64));
    assert!(upstream.checked_against.is_empty());
    assert!(
        upstream
            .describe()
            .ends_with("given as a file, not checked against the release)")
    );
    assert_eq!(
        read.predicate.run_details.builder.id,
        "urn:alloy-sysext-automation:builder:command-line"
    );
    assert_eq!(
        read.predicate.run_details.metadata.started_by,
        StartedBy::command_line()
    );
}
