// Package archive owns Tern function code packages: zip archives of a
// function folder.
//
// Three parties touch a package, and this package serves all of them:
//
//   - the CLI builds one from a folder with [Build] (tern deploy DIR);
//   - the server checks an upload with [Inspect] before storing it;
//   - a worker unpacks a stored package into its code cache with [Extract].
//
// # Building
//
// [Build] is deterministic: entries are sorted, every entry carries the same
// fixed modification time (1980-01-01) and permissions are normalised
// (0644 or 0755 for files, 0755 for directories). The same folder therefore
// always yields the same bytes and the same sha256, which is what the server
// uses to name and deduplicate code. ".git" and whatever ".ternignore" lists
// are left out because they are not code and would make packages large and
// non-reproducible. Symlinks are kept as symlinks, but only when they stay
// inside the folder: the server would refuse anything else, and failing at
// build time names the offending link on the developer's machine.
//
// # Validation
//
// Uploaded archives are hostile input. [Inspect] and [Extract] apply the same
// checks, and Extract never relies on an earlier Inspect:
//
//   - Size limits ([Limits]) bound disk, memory and CPU. The compressed size
//     is checked before parsing; the number of central directory records is
//     counted before archive/zip allocates one struct per record; the
//     uncompressed size is measured while decompressing, never taken from
//     the headers, and decompression stops as soon as the limit is passed, so
//     a zip bomb costs at most the limit. Headers that claim more than the
//     limit are refused up front.
//   - Entry names must be relative, slash-separated paths without ".."
//     elements, backslashes, drive letters or NUL bytes, so that no entry
//     can be written outside the destination ("zip slip").
//   - Names must be unique after cleaning, and a path cannot be both a file
//     and a directory: otherwise the result would depend on extraction
//     order, and Inspect could approve something other than what Extract
//     writes.
//   - A symlink's target must be relative and stay inside the package when
//     resolved from the link's directory. The target may only climb ("..")
//     before it descends, so following it through other in-package links
//     cannot climb out either. No entry may sit below a symlink entry,
//     because writing it would follow the link.
//   - Devices, FIFOs and sockets have no business in a code package.
//     Encrypted entries and unknown compression methods cannot be verified.
//   - Every byte of every entry is read and its CRC-32 compared with the
//     central directory, so corrupt uploads are refused at upload time rather
//     than discovered on a worker.
//   - A root-level "tern.yaml" manifest (at most 64 KiB) is required: a
//     package without one cannot be deployed.
//
// Validation failures are reported as *[Error] values that wrap [ErrInvalid]
// or [ErrTooLarge] and name the offending entry.
//
// # Extraction
//
// [Extract] writes into a fresh sibling temporary directory, syncs it and
// renames it into place, so a crash never leaves a half-written code
// directory and a failure leaves nothing behind. Files are written read-only
// (0444, or 0555 if the entry had any execute bit) and opened with O_EXCL,
// directories are 0755, and symlinks are created last.
package archive
