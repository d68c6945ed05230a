"""Where a scan's facts come from. Each subpackage is named for where it reads them; all of
them build the same records of `auditor.model`.

  live/       a libvirt host over a read-only connection
    connection.py   open_read_only, open_read_write (fix): the URI checks and the event loop
    scanner.py      scan_host, collect_host: capabilities, domains, snapshot XML → HostScan;
                    Host (hostname, libvirt_version, hypervisor_version, driver,
                    external_snapshot_revert), Skipped (what could not be read)
    fleet.py        scan_hosts, collect_hosts: many hosts at once, each one's error its own
    deadline.py     run_each, run_all: worker threads with a time limit per host
    volumes.py      volume_resolver: disks of type='volume' looked up over the connection
  xml/        libvirt's XML, from whichever source (untrusted: no entities, DTDs or network)
    parser.py       parse_snapshot, snapshot_fields → Snapshot (every field), SnapshotDisk;
                    parse_domain_disks → DomainDisk
    disk_source.py  disk_source, source_path → DiskSource (what a <disk>'s source names);
                    Volume, recorded_resolver (the volumes a bundle recorded)
    assemble.py     build_domain, finish_domain → Domain (snapshots ordered, has_children);
                    RawHost/RawDomain/RawSnapshot (XML as read, before parsing);
                    external_snapshot_revert (from the capabilities)
  offline/    files written elsewhere, read later
    source.py       check_source, read_source: a path is a bundle or a metadata directory
    bundle.py       write_bundle (`snapaudit collect`), read_bundle → HostScan with the
                    FileFacts recorded at collection (bundle_records.py reads its members)
    metadata_dir.py scan_metadata_dir: DOMAIN/SNAPSHOT.xml as libvirt keeps them → HostScan
    batches.py      map_batches: a large directory's domains in forked worker processes
  files/      the image and memory files the metadata names, on this machine
    checks.py       gather_files → FileFacts (exists, size, format, backing_chain,
                    internal_snapshots, error, file_type) for every path, HostScan.files
    orphans.py      unreferenced_images → FileFacts(unreferenced=True) beside the images
  demo/       the built-in demo host (a test-driver node file)

The image formats themselves (qcow2's tables, qemu-img) are read by `auditor.images`, which
fix mode shares.
"""
