/*
 * shim.c --- the C half of the `ext2fs` crate.
 *
 * libext2fs only offers primitives; the compound operations a tool needs
 * ("delete a file and free everything it owns", "create a file and link it",
 * rename with link-count bookkeeping) live in e2fsprogs' debugfs and
 * misc/create_inode.c, which are not part of the library.  This file holds
 * our versions of them, built from the same primitives.
 *
 * Interface rules, so that no libext2fs struct layout crosses into Rust:
 *  - handles are opaque pointers (ext2_filsys);
 *  - results come back through the two flat structs below (mirrored with
 *    #[repr(C)] in src/sys.rs) or through callbacks with plain C types;
 *  - every function returns an errcode_t: 0, an errno value, or a
 *    com_err code from libext2fs.  snf_error_kind() classifies them.
 *
 * Allocation order matters: every new inode and block is accounted
 * (ext2fs_*_alloc_stats2) *before* a directory entry is added, because
 * adding an entry to a hashed directory may itself allocate blocks, and an
 * allocated-but-unaccounted block could be handed out twice.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <et/com_err.h>
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

/* Exported by libext2fs but declared only in its private header. */
errcode_t ext2fs_inline_data_expand(ext2_filsys fs, ext2_ino_t ino);

/* ------------------------------------------------------------------ */
/* Structures shared with Rust (keep in sync with src/sys.rs).         */

struct snf_super {
	uint64_t blocks_count;
	uint64_t free_blocks;
	uint64_t reserved_blocks;
	uint64_t inodes_count;
	uint64_t free_inodes;
	int64_t mount_time;
	int64_t write_time;
	int64_t mkfs_time;
	int64_t last_check;
	uint32_t block_size;
	uint32_t cluster_size;
	uint32_t inode_size;
	uint32_t first_data_block;
	uint32_t blocks_per_group;
	uint32_t inodes_per_group;
	uint32_t feature_compat;
	uint32_t feature_incompat;
	uint32_t feature_ro_compat;
	uint32_t state;
	uint32_t rev_level;
	uint32_t mount_count;
	uint32_t max_mount_count;
	uint32_t creator_os;
	uint32_t last_orphan;
	uint32_t journal_inum;
	uint8_t uuid[16];
	uint8_t label[16];
	uint8_t last_mounted[64];
};

struct snf_inode {
	uint64_t size;
	uint64_t blocks512;
	uint64_t file_acl;
	int64_t atime;
	int64_t mtime;
	int64_t ctime;
	int64_t crtime;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint32_t links;
	uint32_t flags;
	uint32_t generation;
	uint32_t rdev_major;
	uint32_t rdev_minor;
	uint32_t dtime;
	uint32_t pad;
};

/*
 * src/sys.rs declares these layouts and constants by hand; the same numbers
 * are asserted there with `const _: () = assert!(...)`, so a change on
 * either side that is not made on the other fails the build instead of
 * corrupting memory at run time.
 */
#define SNF_AT(type, field, off)                                          \
	_Static_assert(offsetof(struct type, field) == (off),               \
		       #type "." #field " moved: update src/sys.rs")
_Static_assert(sizeof(struct snf_super) == 232, "snf_super size");
SNF_AT(snf_super, blocks_count, 0);
SNF_AT(snf_super, free_blocks, 8);
SNF_AT(snf_super, reserved_blocks, 16);
SNF_AT(snf_super, inodes_count, 24);
SNF_AT(snf_super, free_inodes, 32);
SNF_AT(snf_super, mount_time, 40);
SNF_AT(snf_super, write_time, 48);
SNF_AT(snf_super, mkfs_time, 56);
SNF_AT(snf_super, last_check, 64);
SNF_AT(snf_super, block_size, 72);
SNF_AT(snf_super, cluster_size, 76);
SNF_AT(snf_super, inode_size, 80);
SNF_AT(snf_super, first_data_block, 84);
SNF_AT(snf_super, blocks_per_group, 88);
SNF_AT(snf_super, inodes_per_group, 92);
SNF_AT(snf_super, feature_compat, 96);
SNF_AT(snf_super, feature_incompat, 100);
SNF_AT(snf_super, feature_ro_compat, 104);
SNF_AT(snf_super, state, 108);
SNF_AT(snf_super, rev_level, 112);
SNF_AT(snf_super, mount_count, 116);
SNF_AT(snf_super, max_mount_count, 120);
SNF_AT(snf_super, creator_os, 124);
SNF_AT(snf_super, last_orphan, 128);
SNF_AT(snf_super, journal_inum, 132);
SNF_AT(snf_super, uuid, 136);
SNF_AT(snf_super, label, 152);
SNF_AT(snf_super, last_mounted, 168);
_Static_assert(sizeof(struct snf_inode) == 96, "snf_inode size");
SNF_AT(snf_inode, size, 0);
SNF_AT(snf_inode, blocks512, 8);
SNF_AT(snf_inode, file_acl, 16);
SNF_AT(snf_inode, atime, 24);
SNF_AT(snf_inode, mtime, 32);
SNF_AT(snf_inode, ctime, 40);
SNF_AT(snf_inode, crtime, 48);
SNF_AT(snf_inode, mode, 56);
SNF_AT(snf_inode, uid, 60);
SNF_AT(snf_inode, gid, 64);
SNF_AT(snf_inode, links, 68);
SNF_AT(snf_inode, flags, 72);
SNF_AT(snf_inode, generation, 76);
SNF_AT(snf_inode, rdev_major, 80);
SNF_AT(snf_inode, rdev_minor, 84);
SNF_AT(snf_inode, dtime, 88);
SNF_AT(snf_inode, pad, 92);
/* Rust's `Errcode` is a C long and inode numbers cross as u32. */
_Static_assert(sizeof(errcode_t) == sizeof(long), "errcode_t is not a long");
_Static_assert(sizeof(ext2_ino_t) == sizeof(uint32_t), "ext2_ino_t is not 32-bit");
_Static_assert(sizeof(blk64_t) == sizeof(uint64_t), "blk64_t is not 64-bit");
/* The codes src/fs.rs recognises to name unsupported features. */
_Static_assert(EXT2_ET_UNSUPP_FEATURE == 2133571395L, "EXT2_ET_UNSUPP_FEATURE");
_Static_assert(EXT2_ET_RO_UNSUPP_FEATURE == 2133571396L,
	       "EXT2_ET_RO_UNSUPP_FEATURE");

/* Error classes returned by snf_error_kind (mirrored in src/sys.rs). */
enum snf_kind {
	SNF_OTHER = 0,
	SNF_NOT_FOUND = 1,
	SNF_EXISTS = 2,
	SNF_NO_SPACE = 3,
	SNF_NOT_EMPTY = 4,
	SNF_NOT_DIR = 5,
	SNF_IS_DIR = 6,
	SNF_READ_ONLY = 7,
	SNF_UNSUPPORTED = 8,
	SNF_CORRUPT = 9,
	SNF_INVALID = 10,
	SNF_TOO_MANY_LINKS = 11,
	SNF_IO = 12,
};

/* Attribute selection bits for snf_set_attr (mirrored in src/sys.rs). */
#define SNF_SET_MODE 1
#define SNF_SET_UID 2
#define SNF_SET_GID 4
#define SNF_SET_ATIME 8
#define SNF_SET_MTIME 16
_Static_assert(SNF_NOT_FOUND == 1 && SNF_EXISTS == 2 && SNF_NO_SPACE == 3 &&
		       SNF_NOT_EMPTY == 4 && SNF_NOT_DIR == 5 && SNF_IS_DIR == 6 &&
		       SNF_READ_ONLY == 7 && SNF_UNSUPPORTED == 8 &&
		       SNF_CORRUPT == 9 && SNF_INVALID == 10 &&
		       SNF_TOO_MANY_LINKS == 11 && SNF_IO == 12,
	       "error classes: update src/sys.rs");
_Static_assert(SNF_SET_MODE == 1 && SNF_SET_UID == 2 && SNF_SET_GID == 4 &&
		       SNF_SET_ATIME == 8 && SNF_SET_MTIME == 16,
	       "attribute bits: update src/sys.rs");

typedef int (*snf_dirent_cb)(void *ctx, const char *name, int name_len,
			     uint32_t ino, int file_type);
typedef int (*snf_xattr_cb)(void *ctx, const char *name, const void *value,
			    size_t value_len);
typedef int (*snf_range_cb)(void *ctx, uint64_t first, uint64_t count);

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void init_tables(void)
{
	initialize_ext2_error_table();
}

static int64_t now(ext2_filsys fs)
{
	return fs->now ? (int64_t)fs->now : (int64_t)time(NULL);
}

/* How many bytes of struct ext2_inode_large the on-disk inode holds. */
static int large_size(ext2_filsys fs)
{
	int s = EXT2_INODE_SIZE(fs->super);

	if (s > (int)sizeof(struct ext2_inode_large))
		s = (int)sizeof(struct ext2_inode_large);
	return s;
}

/*
 * Read the first large_size() bytes of an inode.  The rest of the struct is
 * zeroed so that i_extra_isize reads 0 on 128-byte-inode filesystems.
 * Writing back the same amount leaves in-inode xattrs (which follow the
 * fixed fields) untouched: libext2fs merges a short buffer with the
 * on-disk inode and recomputes the checksum.
 */
static errcode_t read_large(ext2_filsys fs, ext2_ino_t ino,
			    struct ext2_inode_large *in)
{
	memset(in, 0, sizeof(*in));
	return ext2fs_read_inode_full(fs, ino, EXT2_INODE(in), large_size(fs));
}

static errcode_t write_large(ext2_filsys fs, ext2_ino_t ino,
			     struct ext2_inode_large *in)
{
	return ext2fs_write_inode_full(fs, ino, EXT2_INODE(in), large_size(fs));
}

#define HAS_FIELD(in, field) \
	(inode_includes(EXT2_GOOD_OLD_INODE_SIZE + (in)->i_extra_isize, field))

/* Seconds since the epoch from the 32-bit field and the ext4 epoch bits. */
static int64_t decode_time(uint32_t lo, int has_extra, uint32_t extra)
{
	int64_t t = (int32_t)lo;

	if (has_extra)
		t += (int64_t)(extra & EXT4_EPOCH_MASK) << 32;
	return t;
}

static void encode_time(int64_t t, uint32_t *lo, int has_extra,
			uint32_t *extra)
{
	*lo = (uint32_t)t;
	/* Whole seconds only: the nanosecond part is cleared. */
	if (has_extra)
		*extra = (uint32_t)(((t - (int32_t)*lo) >> 32) &
				    EXT4_EPOCH_MASK);
}

#define GET_TIME(in, f) \
	decode_time((in)->i_##f, HAS_FIELD(in, i_##f##_extra), \
		    (in)->i_##f##_extra)
#define SET_TIME(in, f, t) \
	encode_time((t), &(in)->i_##f, HAS_FIELD(in, i_##f##_extra), \
		    &(in)->i_##f##_extra)

static void set_owner(struct ext2_inode_large *in, uint32_t uid, uint32_t gid)
{
	in->i_uid = (uint16_t)uid;
	ext2fs_set_i_uid_high(*in, (uint16_t)(uid >> 16));
	in->i_gid = (uint16_t)gid;
	ext2fs_set_i_gid_high(*in, (uint16_t)(gid >> 16));
}

static int file_type_of(unsigned int mode)
{
	if (LINUX_S_ISREG(mode))
		return EXT2_FT_REG_FILE;
	if (LINUX_S_ISDIR(mode))
		return EXT2_FT_DIR;
	if (LINUX_S_ISCHR(mode))
		return EXT2_FT_CHRDEV;
	if (LINUX_S_ISBLK(mode))
		return EXT2_FT_BLKDEV;
	if (LINUX_S_ISLNK(mode))
		return EXT2_FT_SYMLINK;
	if (LINUX_S_ISFIFO(mode))
		return EXT2_FT_FIFO;
	if (LINUX_S_ISSOCK(mode))
		return EXT2_FT_SOCK;
	return EXT2_FT_UNKNOWN;
}

static int is_dot_or_dotdot(const struct ext2_dir_entry *d)
{
	int len = ext2fs_dirent_name_len(d);

	return (len == 1 && d->name[0] == '.') ||
	       (len == 2 && d->name[0] == '.' && d->name[1] == '.');
}

static errcode_t lookup(ext2_filsys fs, ext2_ino_t dir, const char *name,
			ext2_ino_t *ino)
{
	return ext2fs_lookup(fs, dir, name, strlen(name), NULL, ino);
}

/* EXT2_ET_FILE_EXISTS if `name` is in `dir`, 0 if it is not. */
static errcode_t check_absent(ext2_filsys fs, ext2_ino_t dir, const char *name)
{
	ext2_ino_t ino;
	errcode_t err = lookup(fs, dir, name, &ino);

	if (err == 0)
		return EXT2_ET_FILE_EXISTS;
	if (err == EXT2_ET_FILE_NOT_FOUND)
		return 0;
	return err;
}

/* Set mtime and ctime of `ino` to now (a directory whose entries changed). */
static errcode_t touch(ext2_filsys fs, ext2_ino_t ino)
{
	struct ext2_inode_large in;
	errcode_t err = read_large(fs, ino, &in);
	int64_t t = now(fs);

	if (err)
		return err;
	SET_TIME(&in, mtime, t);
	SET_TIME(&in, ctime, t);
	return write_large(fs, ino, &in);
}

/* Add an entry, growing the directory by a block when it is full. */
static errcode_t link_expand(ext2_filsys fs, ext2_ino_t dir, const char *name,
			     ext2_ino_t ino, int file_type)
{
	errcode_t err = ext2fs_link(fs, dir, name, ino, file_type);

	if (err == EXT2_ET_DIR_NO_SPACE) {
		err = ext2fs_expand_dir(fs, dir);
		if (err)
			return err;
		err = ext2fs_link(fs, dir, name, ino, file_type);
	}
	return err;
}

/* Remove the entry `name` -> `ino` from `dir`. */
static errcode_t unlink_entry(ext2_filsys fs, ext2_ino_t dir, const char *name,
			      ext2_ino_t ino)
{
	errcode_t err = ext2fs_unlink(fs, dir, name, ino, 0);

	/* ext2fs_unlink reports "no such entry" as DIR_NO_SPACE. */
	if (err == EXT2_ET_DIR_NO_SPACE)
		err = EXT2_ET_FILE_NOT_FOUND;
	return err;
}

/*
 * Adjust a directory's link count by one for a subdirectory's "..".
 * With dir_nlink, a count of 1 means "too many to count" and stays 1.
 */
static errcode_t adjust_dir_links(ext2_filsys fs, ext2_ino_t dir, int delta)
{
	struct ext2_inode_large in;
	errcode_t err = read_large(fs, dir, &in);

	if (err)
		return err;
	if (delta > 0) {
		if (in.i_links_count == 1)
			;
		else if (in.i_links_count + 1 >= EXT2_LINK_MAX) {
			if (!ext2fs_has_feature_dir_nlink(fs->super))
				return EMLINK;
			in.i_links_count = 1;
		} else
			in.i_links_count++;
	} else if (in.i_links_count > 2)
		in.i_links_count--;
	return write_large(fs, dir, &in);
}

/* Whether adding a subdirectory to `dir` would exceed the link limit. */
static errcode_t check_dir_links(ext2_filsys fs, ext2_ino_t dir)
{
	struct ext2_inode_large in;
	errcode_t err = read_large(fs, dir, &in);

	if (err)
		return err;
	if (in.i_links_count != 1 && in.i_links_count + 1 >= EXT2_LINK_MAX &&
	    !ext2fs_has_feature_dir_nlink(fs->super))
		return EMLINK;
	return 0;
}

/*
 * Free an inode and everything it owns: data and extent-tree blocks, the
 * xattr block (or its reference), then the inode itself.  This is debugfs'
 * kill_file_by_inode plus the xattr block it forgets.
 */
static errcode_t release_inode(ext2_filsys fs, ext2_ino_t ino)
{
	struct ext2_inode_large in;
	errcode_t err = read_large(fs, ino, &in);
	int is_dir;

	if (err)
		return err;
	is_dir = LINUX_S_ISDIR(in.i_mode);
	if (ext2fs_inode_has_valid_blocks2(fs, EXT2_INODE(&in))) {
		err = ext2fs_punch(fs, ino, EXT2_INODE(&in), NULL, 0, ~0ULL);
		if (err)
			return err;
		/* punch rewrote the inode (extent root, i_blocks). */
		err = read_large(fs, ino, &in);
		if (err)
			return err;
	}
	if (ext2fs_file_acl_block(fs, EXT2_INODE(&in))) {
		err = ext2fs_free_ext_attr(fs, ino, &in);
		if (err)
			return err;
	}
	in.i_links_count = 0;
	in.i_dtime = (uint32_t)now(fs);
	err = write_large(fs, ino, &in);
	if (err)
		return err;
	ext2fs_inode_alloc_stats2(fs, ino, -1, is_dir);
	return 0;
}

/* Drop one link of a non-directory; free it when it was the last. */
static errcode_t drop_link(ext2_filsys fs, ext2_ino_t ino)
{
	struct ext2_inode_large in;
	errcode_t err = read_large(fs, ino, &in);

	if (err)
		return err;
	if (in.i_links_count > 1) {
		in.i_links_count--;
		SET_TIME(&in, ctime, now(fs));
		return write_large(fs, ino, &in);
	}
	return release_inode(fs, ino);
}

struct empty_ctx {
	int empty;
};

static int empty_proc(struct ext2_dir_entry *d, int offset, int blocksize,
		      char *buf, void *priv)
{
	struct empty_ctx *c = priv;

	(void)offset;
	(void)blocksize;
	(void)buf;
	if (d->inode == 0 || is_dot_or_dotdot(d))
		return 0;
	c->empty = 0;
	return DIRENT_ABORT;
}

static errcode_t dir_is_empty(ext2_filsys fs, ext2_ino_t dir, int *empty)
{
	struct empty_ctx c = { 1 };
	errcode_t err = ext2fs_dir_iterate(fs, dir, 0, NULL, empty_proc, &c);

	*empty = c.empty;
	return err;
}

struct replace_ctx {
	const char *name;
	int name_len;
	ext2_ino_t ino;
	int file_type;
	int filetype_feature;
	int done;
};

static int replace_proc(struct ext2_dir_entry *d, int offset, int blocksize,
			char *buf, void *priv)
{
	struct replace_ctx *c = priv;

	(void)offset;
	(void)blocksize;
	(void)buf;
	if (d->inode == 0 || ext2fs_dirent_name_len(d) != c->name_len ||
	    memcmp(d->name, c->name, c->name_len) != 0)
		return 0;
	d->inode = c->ino;
	if (c->filetype_feature)
		ext2fs_dirent_set_file_type(d, c->file_type);
	c->done = 1;
	return DIRENT_CHANGED | DIRENT_ABORT;
}

/* Point the existing entry `name` of `dir` at another inode, in place. */
static errcode_t replace_entry(ext2_filsys fs, ext2_ino_t dir, const char *name,
			       ext2_ino_t ino, int file_type)
{
	struct replace_ctx c = { name, (int)strlen(name), ino, file_type,
				 ext2fs_has_feature_filetype(fs->super), 0 };
	errcode_t err = ext2fs_dir_iterate(fs, dir, 0, NULL, replace_proc, &c);

	if (err)
		return err;
	return c.done ? 0 : EXT2_ET_FILE_NOT_FOUND;
}

/*
 * Matched by name (replace_entry), not by the DIRENT_DOT_DOT_FILE position flag: the
 * inline-data iterator reports ".." as an ordinary entry.
 */
static errcode_t set_dotdot(ext2_filsys fs, ext2_ino_t dir, ext2_ino_t parent)
{
	errcode_t err = replace_entry(fs, dir, "..", parent, EXT2_FT_DIR);

	return err == EXT2_ET_FILE_NOT_FOUND ? EXT2_ET_DIR_CORRUPTED : err;
}

/*
 * Turn an inline-data regular file into an ordinary one, so that writes and
 * truncation only deal with block-mapped data.  ext2fs_inline_data_expand
 * writes the whole inline area (60+ bytes), so the size is restored after.
 */
static errcode_t uninline_file(ext2_filsys fs, ext2_ino_t ino)
{
	struct ext2_inode in;
	ext2_file_t f;
	errcode_t err, err2;
	uint64_t size;

	err = ext2fs_read_inode(fs, ino, &in);
	if (err)
		return err;
	if (!(in.i_flags & EXT4_INLINE_DATA_FL))
		return 0;
	size = EXT2_I_SIZE(&in);
	err = ext2fs_inline_data_expand(fs, ino);
	if (err)
		return err;
	err = ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &f);
	if (err)
		return err;
	err = ext2fs_file_set_size2(f, size);
	err2 = ext2fs_file_close(f);
	return err ? err : err2;
}

static errcode_t require_regular(ext2_filsys fs, ext2_ino_t ino)
{
	struct ext2_inode in;
	errcode_t err = ext2fs_read_inode(fs, ino, &in);

	if (err)
		return err;
	if (LINUX_S_ISDIR(in.i_mode))
		return EISDIR;
	if (!LINUX_S_ISREG(in.i_mode))
		return EINVAL;
	return 0;
}


/* ------------------------------------------------------------------ */
/* Opening, closing, superblock                                         */

/*
 * Handles opened with durable == 0 never fsync.  unix_io fsyncs the file
 * when it opens it and on every io_channel_flush, which on a freshly
 * written private copy forces hundreds of megabytes of dirty page cache to
 * disk for nothing: the copy is a temporary file read back by this same
 * process.  Such handles use scratch_io below: plain pread/pwrite at the
 * channel's offset, no block cache (the kernel's page cache serves
 * repeats), so every write reaches the kernel at once and other readers
 * (e2fsck, the dump) see it without a flush; its flush does nothing.
 */
struct scratch_data {
	int fd;
	uint64_t offset;
};

static errcode_t scratch_close(io_channel ch);

static errcode_t scratch_open(const char *name, int flags, io_channel *out);

static errcode_t scratch_set_blksize(io_channel ch, int blksize)
{
	ch->block_size = blksize;
	return 0;
}

static errcode_t scratch_rw(io_channel ch, uint64_t pos, size_t size,
			    void *rbuf, const void *wbuf)
{
	struct scratch_data *d = ch->private_data;
	size_t done = 0;

	while (done < size) {
		ssize_t n = rbuf ? pread(d->fd, (char *)rbuf + done,
					 size - done,
					 (off_t)(d->offset + pos + done))
				 : pwrite(d->fd, (const char *)wbuf + done,
					  size - done,
					  (off_t)(d->offset + pos + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0) {
			if (!rbuf)
				return EXT2_ET_SHORT_WRITE;
			/* Past the end of the file reads as zeros, as in unix_io. */
			memset((char *)rbuf + done, 0, size - done);
			return EXT2_ET_SHORT_READ;
		}
		done += (size_t)n;
	}
	return 0;
}

static size_t scratch_size(io_channel ch, int count)
{
	return count < 0 ? (size_t)-(int64_t)count
			 : (size_t)count * (size_t)ch->block_size;
}

static errcode_t scratch_read_blk64(io_channel ch, unsigned long long block,
				    int count, void *data)
{
	return scratch_rw(ch, block * (uint64_t)ch->block_size,
			  scratch_size(ch, count), data, NULL);
}

static errcode_t scratch_write_blk64(io_channel ch, unsigned long long block,
				     int count, const void *data)
{
	return scratch_rw(ch, block * (uint64_t)ch->block_size,
			  scratch_size(ch, count), NULL, data);
}

static errcode_t scratch_read_blk(io_channel ch, unsigned long block,
				  int count, void *data)
{
	return scratch_read_blk64(ch, block, count, data);
}

static errcode_t scratch_write_blk(io_channel ch, unsigned long block,
				   int count, const void *data)
{
	return scratch_write_blk64(ch, block, count, data);
}

static errcode_t scratch_write_byte(io_channel ch, unsigned long offset,
				    int count, const void *data)
{
	if (count < 0)
		return EINVAL;
	return scratch_rw(ch, offset, (size_t)count, NULL, data);
}

static errcode_t scratch_flush(io_channel ch)
{
	(void)ch;
	return 0;
}

static errcode_t scratch_set_option(io_channel ch, const char *option,
				    const char *arg)
{
	struct scratch_data *d = ch->private_data;
	unsigned long long v;
	char *end;

	if (strcmp(option, "offset") != 0)
		return EXT2_ET_INVALID_ARGUMENT;
	if (!arg)
		return EXT2_ET_INVALID_ARGUMENT;
	errno = 0;
	v = strtoull(arg, &end, 0);
	if (errno || *end || end == arg)
		return EXT2_ET_INVALID_ARGUMENT;
	d->offset = v;
	return 0;
}

static struct struct_io_manager scratch_io = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "snf scratch I/O manager",
	.open = scratch_open,
	.close = scratch_close,
	.set_blksize = scratch_set_blksize,
	.read_blk = scratch_read_blk,
	.write_blk = scratch_write_blk,
	.flush = scratch_flush,
	.write_byte = scratch_write_byte,
	.set_option = scratch_set_option,
	.read_blk64 = scratch_read_blk64,
	.write_blk64 = scratch_write_blk64,
};

static errcode_t scratch_open(const char *name, int flags, io_channel *out)
{
	io_channel ch = NULL;
	struct scratch_data *d = NULL;
	errcode_t err;

	if (!name)
		return EXT2_ET_BAD_DEVICE_NAME;
	err = ext2fs_get_memzero(sizeof(*ch), &ch);
	if (!err)
		err = ext2fs_get_memzero(sizeof(*d), &d);
	if (!err)
		err = ext2fs_get_mem(strlen(name) + 1, &ch->name);
	if (err)
		goto fail;
	strcpy(ch->name, name);
	d->fd = open(name, ((flags & IO_FLAG_RW) ? O_RDWR : O_RDONLY) |
				   O_CLOEXEC);
	if (d->fd < 0) {
		err = errno;
		goto fail;
	}
	ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	ch->manager = &scratch_io;
	ch->block_size = 1024;
	ch->refcount = 1;
	ch->private_data = d;
	*out = ch;
	return 0;
fail:
	if (ch)
		ext2fs_free_mem(&ch->name);
	ext2fs_free_mem(&d);
	ext2fs_free_mem(&ch);
	return err;
}

static errcode_t scratch_close(io_channel ch)
{
	struct scratch_data *d = ch->private_data;
	errcode_t err = 0;

	if (--ch->refcount > 0)
		return 0;
	if (close(d->fd) < 0)
		err = errno;
	ext2fs_free_mem(&d);
	ext2fs_free_mem(&ch->name);
	ext2fs_free_mem(&ch);
	return err;
}

errcode_t snf_open(const char *path, const char *io_options, int writable,
		   int durable, ext2_filsys *out)
{
	ext2_filsys fs = NULL;
	int flags = EXT2_FLAG_64BITS | (writable ? EXT2_FLAG_RW : 0);
	errcode_t err;

	pthread_once(&tables_once, init_tables);
	*out = NULL;
	err = ext2fs_open2(path, io_options, flags, 0, 0,
			   durable ? unix_io_manager : &scratch_io, &fs);
	if (err)
		return err;
	if (writable) {
		err = ext2fs_read_bitmaps(fs);
		if (err) {
			ext2fs_free(fs);
			return err;
		}
	}
	/* Modes are always given explicitly; never mask them. */
	fs->umask = 0;
	*out = fs;
	return 0;
}

errcode_t snf_close(ext2_filsys fs)
{
	return ext2fs_close_free(&fs);
}

errcode_t snf_flush(ext2_filsys fs)
{
	errcode_t err;

	if (!(fs->flags & EXT2_FLAG_RW))
		return 0;
	err = ext2fs_write_bitmaps(fs);
	if (err)
		return err;
	err = ext2fs_flush(fs);
	if (err)
		return err;
	return io_channel_flush(fs->io);
}

void snf_super_info(ext2_filsys fs, struct snf_super *out)
{
	struct ext2_super_block *sb = fs->super;

	memset(out, 0, sizeof(*out));
	out->blocks_count = ext2fs_blocks_count(sb);
	out->free_blocks = ext2fs_free_blocks_count(sb);
	out->reserved_blocks = ext2fs_r_blocks_count(sb);
	out->inodes_count = sb->s_inodes_count;
	out->free_inodes = sb->s_free_inodes_count;
	out->mount_time = sb->s_mtime;
	out->write_time = sb->s_wtime;
	out->mkfs_time = sb->s_mkfs_time;
	out->last_check = sb->s_lastcheck;
	out->block_size = fs->blocksize;
	out->cluster_size = EXT2_CLUSTER_SIZE(sb);
	out->inode_size = EXT2_INODE_SIZE(sb);
	out->first_data_block = sb->s_first_data_block;
	out->blocks_per_group = sb->s_blocks_per_group;
	out->inodes_per_group = sb->s_inodes_per_group;
	out->feature_compat = sb->s_feature_compat;
	out->feature_incompat = sb->s_feature_incompat;
	out->feature_ro_compat = sb->s_feature_ro_compat;
	out->state = sb->s_state;
	out->rev_level = sb->s_rev_level;
	out->mount_count = sb->s_mnt_count;
	out->max_mount_count = (uint32_t)(int32_t)sb->s_max_mnt_count;
	out->creator_os = sb->s_creator_os;
	out->last_orphan = sb->s_last_orphan;
	out->journal_inum = sb->s_journal_inum;
	memcpy(out->uuid, sb->s_uuid, sizeof(out->uuid));
	memcpy(out->label, sb->s_volume_name, sizeof(out->label));
	memcpy(out->last_mounted, sb->s_last_mounted, sizeof(out->last_mounted));
}

/*
 * What this libext2fs opens: an open refused with EXT2_ET_UNSUPP_FEATURE
 * or EXT2_ET_RO_UNSUPP_FEATURE says no more, so the caller compares the
 * superblock's feature words with these to name the features.
 */
void snf_lib_features(uint32_t *compat, uint32_t *incompat, uint32_t *ro_compat)
{
	*compat = EXT2_LIB_FEATURE_COMPAT_SUPP;
	*incompat = EXT2_LIB_FEATURE_INCOMPAT_SUPP;
	*ro_compat = EXT2_LIB_FEATURE_RO_COMPAT_SUPP;
}

/* The version of the libext2fs linked at run time ("1.47.0"). */
const char *snf_lib_version(void)
{
	const char *version = NULL, *date = NULL;

	ext2fs_get_library_version(&version, &date);
	return version ? version : "unknown";
}

const char *snf_error_message(errcode_t code)
{
	pthread_once(&tables_once, init_tables);
	return error_message(code);
}

int snf_error_kind(errcode_t code)
{
	switch (code) {
	case ENOENT:
	case EXT2_ET_FILE_NOT_FOUND:
	case EXT2_ET_EA_KEY_NOT_FOUND:
		return SNF_NOT_FOUND;
	case EEXIST:
	case EXT2_ET_FILE_EXISTS:
	case EXT2_ET_DIR_EXISTS:
		return SNF_EXISTS;
	case ENOSPC:
	case EXT2_ET_BLOCK_ALLOC_FAIL:
	case EXT2_ET_INODE_ALLOC_FAIL:
	case EXT2_ET_DIR_NO_SPACE:
	case EXT2_ET_EA_NO_SPACE:
	case EXT2_ET_INLINE_DATA_NO_SPACE:
	case EXT2_ET_TOO_MANY_INODES:
		return SNF_NO_SPACE;
	case ENOTEMPTY:
		return SNF_NOT_EMPTY;
	case ENOTDIR:
	case EXT2_ET_NO_DIRECTORY:
		return SNF_NOT_DIR;
	case EISDIR:
		return SNF_IS_DIR;
	case EROFS:
	case EXT2_ET_RO_FILSYS:
	case EXT2_ET_FILE_RO:
		return SNF_READ_ONLY;
	case ENOTSUP:
	case EXT2_ET_UNSUPP_FEATURE:
	case EXT2_ET_RO_UNSUPP_FEATURE:
	case EXT2_ET_UNIMPLEMENTED:
	case EXT2_ET_OP_NOT_SUPPORTED:
	case EXT2_ET_DIRHASH_UNSUPP:
	case EXT2_ET_MISSING_EA_FEATURE:
	case EXT2_ET_EXTENT_NOT_SUPPORTED:
	case EXT2_ET_EXTERNAL_JOURNAL_NOSUPP:
	case EXT2_ET_JOURNAL_UNSUPP_VERSION:
	case EXT2_ET_MMP_FAILED:
	case EXT2_ET_MMP_FSCK_ON:
		return SNF_UNSUPPORTED;
	case EXT2_ET_BAD_MAGIC:
	case EXT2_ET_REV_TOO_HIGH:
	case EXT2_ET_CORRUPT_SUPERBLOCK:
	case EXT2_ET_UNEXPECTED_BLOCK_SIZE:
	case EXT2_ET_DIR_CORRUPTED:
	case EXT2_ET_BAD_INODE_NUM:
	case EXT2_ET_BAD_BLOCK_NUM:
	case EXT2_ET_BAD_IND_BLOCK:
	case EXT2_ET_BAD_DIND_BLOCK:
	case EXT2_ET_BAD_TIND_BLOCK:
	case EXT2_ET_GDESC_BAD_BLOCK_MAP:
	case EXT2_ET_GDESC_BAD_INODE_MAP:
	case EXT2_ET_GDESC_BAD_INODE_TABLE:
	case EXT2_ET_MISSING_INODE_TABLE:
	case EXT2_ET_BAD_DESC_SIZE:
	case EXT2_ET_SHORT_READ:
	case EXT2_ET_EXTENT_HEADER_BAD:
	case EXT2_ET_EXTENT_INDEX_BAD:
	case EXT2_ET_EXTENT_LEAF_BAD:
	case EXT2_ET_EXTENT_CYCLE:
	case EXT2_ET_INODE_CSUM_INVALID:
	case EXT2_ET_INODE_BITMAP_CSUM_INVALID:
	case EXT2_ET_BLOCK_BITMAP_CSUM_INVALID:
	case EXT2_ET_EXTENT_CSUM_INVALID:
	case EXT2_ET_DIR_CSUM_INVALID:
	case EXT2_ET_EXT_ATTR_CSUM_INVALID:
	case EXT2_ET_SB_CSUM_INVALID:
	case EXT2_ET_UNKNOWN_CSUM:
	case EXT2_ET_BAD_EA_BLOCK_NUM:
	case EXT2_ET_BAD_EA_HEADER:
	case EXT2_ET_BAD_EA_HASH:
	case EXT2_ET_EA_BAD_NAME_LEN:
	case EXT2_ET_EA_BAD_VALUE_SIZE:
	case EXT2_ET_EA_BAD_VALUE_OFFSET:
	case EXT2_ET_EA_INODE_CORRUPTED:
	case EXT2_ET_INODE_CORRUPTED:
	case EXT2_ET_INODE_IS_GARBAGE:
	case EXT2_ET_FILESYSTEM_CORRUPTED:
	case EXT2_ET_BAD_CRC:
	case EXT2_ET_CORRUPT_JOURNAL_SB:
	case EXT2_ET_NO_GDESC:
	case EXT2_ET_RESIZE_INODE_CORRUPT:
	case EXT2_ET_NO_INLINE_DATA:
	case EXT2_ET_INLINE_DATA_NO_BLOCK:
	case EXT2_ET_SYMLINK_LOOP:
	case EXT2_ET_TOOSMALL:
		return SNF_CORRUPT;
	case EINVAL:
	case ENAMETOOLONG:
	case EXT2_ET_INVALID_ARGUMENT:
	case EXT2_ET_FILE_TOO_BIG:
	case EFBIG:
		return SNF_INVALID;
	case EMLINK:
	case EXT2_ET_TOO_MANY_REFS:
		return SNF_TOO_MANY_LINKS;
	case EIO:
	case EXT2_ET_SHORT_WRITE:
	case EXT2_ET_LLSEEK_FAILED:
	case EXT2_ET_GDESC_READ:
	case EXT2_ET_GDESC_WRITE:
	case EXT2_ET_INODE_BITMAP_WRITE:
	case EXT2_ET_INODE_BITMAP_READ:
	case EXT2_ET_BLOCK_BITMAP_WRITE:
	case EXT2_ET_BLOCK_BITMAP_READ:
	case EXT2_ET_INODE_TABLE_WRITE:
	case EXT2_ET_INODE_TABLE_READ:
	case EXT2_ET_NEXT_INODE_READ:
		return SNF_IO;
	default:
		return SNF_OTHER;
	}
}

/*
 * Whether the internal journal holds no transactions (jbd2 superblock s_start == 0),
 * i.e. a set needs_recovery flag has nothing left to replay.
 */
errcode_t snf_journal_is_empty(ext2_filsys fs, int *empty)
{
	unsigned char buf[1024];
	ext2_file_t f;
	unsigned int got = 0;
	errcode_t err, err2;
	uint32_t magic, start;
	ext2_ino_t jino = fs->super->s_journal_inum;

	*empty = 0;
	if (!ext2fs_has_feature_journal(fs->super))
		return EXT2_ET_NO_JOURNAL;
	if (jino == 0)
		return EXT2_ET_EXTERNAL_JOURNAL_NOSUPP;
	err = ext2fs_file_open(fs, jino, 0, &f);
	if (err)
		return err;
	err = ext2fs_file_read(f, buf, sizeof(buf), &got);
	err2 = ext2fs_file_close(f);
	if (!err)
		err = err2;
	if (err)
		return err;
	if (got < 32)
		return EXT2_ET_CORRUPT_JOURNAL_SB;
	/* The jbd2 superblock is big-endian: magic at 0, s_start at 28. */
	magic = (uint32_t)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3];
	start = (uint32_t)buf[28] << 24 | buf[29] << 16 | buf[30] << 8 | buf[31];
	if (magic != 0xc03b3998U)
		return EXT2_ET_CORRUPT_JOURNAL_SB;
	*empty = (start == 0);
	return 0;
}

/* Clear needs_recovery; written back by the next flush or close. */
void snf_clear_needs_recovery(ext2_filsys fs)
{
	ext2fs_clear_feature_journal_needs_recovery(fs->super);
	ext2fs_mark_super_dirty(fs);
}

/* ------------------------------------------------------------------ */
/* Reading                                                              */

errcode_t snf_read_inode(ext2_filsys fs, uint32_t ino, struct snf_inode *out)
{
	struct ext2_inode_large in;
	errcode_t err;

	memset(out, 0, sizeof(*out));
	if (ino == 0 || ino > fs->super->s_inodes_count)
		return EXT2_ET_BAD_INODE_NUM;
	err = read_large(fs, ino, &in);
	if (err)
		return err;
	out->size = EXT2_I_SIZE(&in);
	out->blocks512 = ext2fs_get_stat_i_blocks(fs, EXT2_INODE(&in));
	out->file_acl = ext2fs_file_acl_block(fs, EXT2_INODE(&in));
	out->atime = GET_TIME(&in, atime);
	out->mtime = GET_TIME(&in, mtime);
	out->ctime = GET_TIME(&in, ctime);
	out->crtime = HAS_FIELD(&in, i_crtime) ? GET_TIME(&in, crtime) : 0;
	out->mode = in.i_mode;
	out->uid = inode_uid(in);
	out->gid = inode_gid(in);
	out->links = in.i_links_count;
	out->flags = in.i_flags;
	out->generation = in.i_generation;
	out->dtime = in.i_dtime;
	if (LINUX_S_ISCHR(in.i_mode) || LINUX_S_ISBLK(in.i_mode)) {
		/* Old (8:8) encoding in i_block[0], new (12:20) in i_block[1]. */
		if (in.i_block[0]) {
			out->rdev_major = (in.i_block[0] >> 8) & 0xff;
			out->rdev_minor = in.i_block[0] & 0xff;
		} else {
			out->rdev_major = (in.i_block[1] & 0xfff00) >> 8;
			out->rdev_minor = (in.i_block[1] & 0xff) |
					  ((in.i_block[1] >> 12) & 0xfff00);
		}
	}
	return 0;
}

errcode_t snf_lookup(ext2_filsys fs, uint32_t dir, const char *name,
		     int name_len, uint32_t *ino)
{
	ext2_ino_t found = 0;
	errcode_t err = ext2fs_lookup(fs, dir, name, name_len, NULL, &found);

	*ino = found;
	return err;
}

struct iter_ctx {
	snf_dirent_cb cb;
	void *ctx;
};

static int iter_proc(struct ext2_dir_entry *d, int offset, int blocksize,
		     char *buf, void *priv)
{
	struct iter_ctx *c = priv;

	(void)offset;
	(void)blocksize;
	(void)buf;
	if (d->inode == 0 || is_dot_or_dotdot(d))
		return 0;
	if (c->cb(c->ctx, d->name, ext2fs_dirent_name_len(d), d->inode,
		  ext2fs_dirent_file_type(d)))
		return DIRENT_ABORT;
	return 0;
}

errcode_t snf_dir_iterate(ext2_filsys fs, uint32_t dir, snf_dirent_cb cb,
			  void *ctx)
{
	struct iter_ctx c = { cb, ctx };

	return ext2fs_dir_iterate(fs, dir, 0, NULL, iter_proc, &c);
}

errcode_t snf_read(ext2_filsys fs, uint32_t ino, uint64_t offset, void *buf,
		   uint32_t len, uint32_t *got)
{
	ext2_file_t f;
	errcode_t err, err2;
	uint32_t total = 0;

	*got = 0;
	err = ext2fs_file_open(fs, ino, 0, &f);
	if (err)
		return err;
	err = ext2fs_file_llseek(f, offset, EXT2_SEEK_SET, NULL);
	while (!err && total < len) {
		unsigned int n = 0;

		err = ext2fs_file_read(f, (char *)buf + total, len - total, &n);
		if (err || n == 0)
			break;
		total += n;
	}
	err2 = ext2fs_file_close(f);
	*got = total;
	return err ? err : err2;
}

errcode_t snf_read_link(ext2_filsys fs, uint32_t ino, char *buf, uint32_t cap,
			uint32_t *len)
{
	struct ext2_inode in;
	errcode_t err;
	uint64_t size;

	*len = 0;
	err = ext2fs_read_inode(fs, ino, &in);
	if (err)
		return err;
	if (!LINUX_S_ISLNK(in.i_mode))
		return EINVAL;
	size = EXT2_I_SIZE(&in);
	if (size >= fs->blocksize || size > cap)
		return EXT2_ET_INODE_CORRUPTED;
	if (!(in.i_flags & EXT4_INLINE_DATA_FL) &&
	    ext2fs_inode_data_blocks2(fs, &in) == 0 &&
	    size < sizeof(in.i_block)) {
		/* Fast symlink: the target lives in i_block. */
		memcpy(buf, in.i_block, size);
		*len = (uint32_t)size;
		return 0;
	}
	err = snf_read(fs, ino, 0, buf, (uint32_t)size, len);
	if (!err && *len != size)
		err = EXT2_ET_SHORT_READ;
	return err;
}

struct xattr_ctx {
	snf_xattr_cb cb;
	void *ctx;
};

static int xattr_proc(char *name, char *value, size_t value_len, void *priv)
{
	struct xattr_ctx *c = priv;

	/* Inline data is stored as an xattr; it is file content, not an attribute. */
	if (strcmp(name, "system.data") == 0)
		return 0;
	return c->cb(c->ctx, name, value, value_len) ? XATTR_ABORT : 0;
}

errcode_t snf_xattrs(ext2_filsys fs, uint32_t ino, snf_xattr_cb cb, void *ctx)
{
	struct ext2_xattr_handle *h;
	struct xattr_ctx c = { cb, ctx };
	errcode_t err, err2;

	err = ext2fs_xattrs_open(fs, ino, &h);
	if (err == EXT2_ET_MISSING_EA_FEATURE)
		return 0;
	if (err)
		return err;
	err = ext2fs_xattrs_read(h);
	if (!err)
		err = ext2fs_xattrs_iterate(h, xattr_proc, &c);
	err2 = ext2fs_xattrs_close(&h);
	return err ? err : err2;
}

errcode_t snf_used_blocks(ext2_filsys fs, snf_range_cb cb, void *ctx)
{
	blk64_t start, end, first, next;
	errcode_t err;

	if (!fs->block_map) {
		err = ext2fs_read_block_bitmap(fs);
		if (err)
			return err;
	}
	start = fs->super->s_first_data_block;
	end = ext2fs_blocks_count(fs->super) - 1;
	/*
	 * Blocks before s_first_data_block (the boot block of 1 KiB-block
	 * filesystems) are outside the bitmap; boot code may live there.
	 */
	if (start > 0 && cb(ctx, 0, start))
		return 0;
	while (start <= end) {
		err = ext2fs_find_first_set_block_bitmap2(fs->block_map, start,
							  end, &first);
		if (err == ENOENT)
			break;
		if (err)
			return err;
		err = ext2fs_find_first_zero_block_bitmap2(fs->block_map, first,
							   end, &next);
		if (err == ENOENT)
			next = end + 1;
		else if (err)
			return err;
		if (cb(ctx, first, next - first))
			return 0;
		start = next;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Writing file content                                                 */

errcode_t snf_write(ext2_filsys fs, uint32_t ino, uint64_t offset,
		    const void *buf, uint32_t len)
{
	ext2_file_t f;
	errcode_t err, err2;
	uint32_t done = 0;

	err = require_regular(fs, ino);
	if (!err)
		err = uninline_file(fs, ino);
	if (err)
		return err;
	err = ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &f);
	if (err)
		return err;
	err = ext2fs_file_llseek(f, offset, EXT2_SEEK_SET, NULL);
	while (!err && done < len) {
		unsigned int n = 0;

		err = ext2fs_file_write(f, (const char *)buf + done, len - done,
					&n);
		if (!err && n == 0)
			err = EIO;
		done += n;
	}
	err2 = ext2fs_file_close(f);
	if (!err)
		err = err2;
	if (!err)
		err = touch(fs, ino);
	return err;
}

errcode_t snf_set_size(ext2_filsys fs, uint32_t ino, uint64_t size)
{
	ext2_file_t f;
	errcode_t err, err2;

	err = require_regular(fs, ino);
	if (!err)
		err = uninline_file(fs, ino);
	if (err)
		return err;
	err = ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &f);
	if (err)
		return err;
	err = ext2fs_file_set_size2(f, size);
	err2 = ext2fs_file_close(f);
	if (!err)
		err = err2;
	if (!err)
		err = touch(fs, ino);
	return err;
}

/* ------------------------------------------------------------------ */
/* Creating                                                             */

errcode_t snf_create(ext2_filsys fs, uint32_t dir, const char *name,
		     uint32_t mode, uint32_t uid, uint32_t gid, uint32_t major,
		     uint32_t minor, uint32_t *out)
{
	struct ext2_inode_large in;
	ext2_ino_t ino;
	errcode_t err;
	int ft = file_type_of(mode);
	int64_t t = now(fs);

	*out = 0;
	if (ft == EXT2_FT_UNKNOWN || ft == EXT2_FT_DIR || ft == EXT2_FT_SYMLINK)
		return EINVAL;
	err = check_absent(fs, dir, name);
	if (err)
		return err;
	err = ext2fs_new_inode(fs, dir, mode, NULL, &ino);
	if (err)
		return err;
	ext2fs_inode_alloc_stats2(fs, ino, +1, 0);

	memset(&in, 0, sizeof(in));
	in.i_mode = mode;
	set_owner(&in, uid, gid);
	in.i_links_count = 1;
	in.i_atime = in.i_mtime = in.i_ctime = (uint32_t)t;
	if (ft == EXT2_FT_REG_FILE && ext2fs_has_feature_extents(fs->super)) {
		ext2_extent_handle_t h;

		/* Opening an extent handle on an empty inode writes the header. */
		err = ext2fs_extent_open2(fs, ino, EXT2_INODE(&in), &h);
		if (err)
			goto undo;
		ext2fs_extent_free(h);
	} else if (ft == EXT2_FT_CHRDEV || ft == EXT2_FT_BLKDEV) {
		if (major < 256 && minor < 256) {
			in.i_block[0] = major * 256 + minor;
			in.i_block[1] = 0;
		} else {
			in.i_block[0] = 0;
			in.i_block[1] = (minor & 0xff) | (major << 8) |
					((minor & ~0xffu) << 12);
		}
	}
	/* write_new_inode fills i_extra_isize and the creation time. */
	err = ext2fs_write_new_inode(fs, ino, EXT2_INODE(&in));
	if (err)
		goto undo;
	err = link_expand(fs, dir, name, ino, ft);
	if (err)
		goto undo;
	err = touch(fs, dir);
	*out = ino;
	return err;
undo:
	/* A linked count of 0 and a dtime keep e2fsck from seeing an orphan. */
	memset(&in, 0, sizeof(in));
	in.i_dtime = (uint32_t)t;
	ext2fs_write_new_inode(fs, ino, EXT2_INODE(&in));
	ext2fs_inode_alloc_stats2(fs, ino, -1, 0);
	return err;
}

errcode_t snf_mkdir(ext2_filsys fs, uint32_t dir, const char *name,
		    uint32_t mode, uint32_t uid, uint32_t gid, uint32_t *out)
{
	struct ext2_inode_large in, parent;
	ext2_ino_t ino;
	errcode_t err;
	int was_uncounted;

	*out = 0;
	err = check_absent(fs, dir, name);
	if (!err)
		err = check_dir_links(fs, dir);
	if (!err)
		err = read_large(fs, dir, &parent);
	if (err)
		return err;
	was_uncounted = parent.i_links_count == 1;
	err = ext2fs_new_inode(fs, dir, LINUX_S_IFDIR | (mode & 07777), NULL,
			       &ino);
	if (err)
		return err;
	/* No name: allocate and account the directory, link it ourselves. */
	err = ext2fs_mkdir(fs, dir, ino, NULL);
	if (err)
		return err;
	/* ext2fs_mkdir counted the new ".." in the parent; fix the overflow cases. */
	err = read_large(fs, dir, &parent);
	if (!err && (was_uncounted || parent.i_links_count >= EXT2_LINK_MAX)) {
		parent.i_links_count = 1;
		err = write_large(fs, dir, &parent);
	}
	if (!err)
		err = read_large(fs, ino, &in);
	if (!err) {
		in.i_mode = LINUX_S_IFDIR | (mode & 07777);
		set_owner(&in, uid, gid);
		err = write_large(fs, ino, &in);
	}
	if (!err)
		err = link_expand(fs, dir, name, ino, EXT2_FT_DIR);
	if (err) {
		release_inode(fs, ino);
		adjust_dir_links(fs, dir, -1);
		return err;
	}
	*out = ino;
	return touch(fs, dir);
}

errcode_t snf_symlink(ext2_filsys fs, uint32_t dir, const char *name,
		      const char *target, uint32_t uid, uint32_t gid,
		      uint32_t *out)
{
	struct ext2_inode_large in;
	ext2_ino_t ino;
	errcode_t err;
	size_t len = strlen(target);

	*out = 0;
	if (len == 0)
		return EINVAL;
	if (len >= fs->blocksize)
		return ENAMETOOLONG;
	err = check_absent(fs, dir, name);
	if (err)
		return err;
	err = ext2fs_new_inode(fs, dir, LINUX_S_IFLNK | 0777, NULL, &ino);
	if (err)
		return err;
	/* No name: the inode and its block are allocated and accounted. */
	err = ext2fs_symlink(fs, dir, ino, NULL, target);
	if (err)
		return err;
	err = read_large(fs, ino, &in);
	if (!err) {
		set_owner(&in, uid, gid);
		err = write_large(fs, ino, &in);
	}
	if (!err)
		err = link_expand(fs, dir, name, ino, EXT2_FT_SYMLINK);
	if (err) {
		release_inode(fs, ino);
		return err;
	}
	*out = ino;
	return touch(fs, dir);
}

errcode_t snf_link(ext2_filsys fs, uint32_t ino, uint32_t dir,
		   const char *name)
{
	struct ext2_inode_large in;
	errcode_t err = read_large(fs, ino, &in);

	if (err)
		return err;
	if (LINUX_S_ISDIR(in.i_mode))
		return EISDIR;
	if (in.i_links_count >= EXT2_LINK_MAX)
		return EMLINK;
	err = check_absent(fs, dir, name);
	if (!err)
		err = link_expand(fs, dir, name, ino, file_type_of(in.i_mode));
	if (err)
		return err;
	err = read_large(fs, ino, &in);
	if (err)
		return err;
	in.i_links_count++;
	SET_TIME(&in, ctime, now(fs));
	err = write_large(fs, ino, &in);
	if (!err)
		err = touch(fs, dir);
	return err;
}

/* ------------------------------------------------------------------ */
/* Removing and renaming                                                */

errcode_t snf_unlink(ext2_filsys fs, uint32_t dir, const char *name)
{
	struct ext2_inode in;
	ext2_ino_t ino;
	errcode_t err = lookup(fs, dir, name, &ino);

	if (!err)
		err = ext2fs_read_inode(fs, ino, &in);
	if (err)
		return err;
	if (LINUX_S_ISDIR(in.i_mode))
		return EISDIR;
	err = unlink_entry(fs, dir, name, ino);
	if (!err)
		err = drop_link(fs, ino);
	if (!err)
		err = touch(fs, dir);
	return err;
}

errcode_t snf_rmdir(ext2_filsys fs, uint32_t dir, const char *name)
{
	struct ext2_inode in;
	ext2_ino_t ino;
	int empty = 0;
	errcode_t err = lookup(fs, dir, name, &ino);

	if (!err)
		err = ext2fs_read_inode(fs, ino, &in);
	if (err)
		return err;
	if (!LINUX_S_ISDIR(in.i_mode))
		return ENOTDIR;
	if (ino == EXT2_ROOT_INO)
		return EINVAL;
	err = dir_is_empty(fs, ino, &empty);
	if (err)
		return err;
	if (!empty)
		return ENOTEMPTY;
	err = unlink_entry(fs, dir, name, ino);
	if (!err)
		err = release_inode(fs, ino);
	if (!err)
		err = adjust_dir_links(fs, dir, -1);
	if (!err)
		err = touch(fs, dir);
	return err;
}

/* EINVAL if `dir` is `ancestor` or lies below it. */
static errcode_t check_not_below(ext2_filsys fs, ext2_ino_t dir,
				 ext2_ino_t ancestor)
{
	ext2_ino_t cur = dir, parent;
	int depth;
	errcode_t err;

	for (depth = 0; depth < 65536; depth++) {
		if (cur == ancestor)
			return EINVAL;
		if (cur == EXT2_ROOT_INO)
			return 0;
		err = ext2fs_lookup(fs, cur, "..", 2, NULL, &parent);
		if (err)
			return err;
		if (parent == cur)
			return 0;
		cur = parent;
	}
	return EXT2_ET_DIR_CORRUPTED;
}

errcode_t snf_rename(ext2_filsys fs, uint32_t from_dir, const char *from_name,
		     uint32_t to_dir, const char *to_name)
{
	struct ext2_inode_large src_in, dst_in;
	ext2_ino_t src, dst = 0;
	int src_is_dir, dst_is_dir = 0, have_dst, empty;
	errcode_t err;

	err = lookup(fs, from_dir, from_name, &src);
	if (!err)
		err = read_large(fs, src, &src_in);
	if (err)
		return err;
	src_is_dir = LINUX_S_ISDIR(src_in.i_mode);

	err = lookup(fs, to_dir, to_name, &dst);
	if (err && err != EXT2_ET_FILE_NOT_FOUND)
		return err;
	have_dst = (err == 0);
	if (have_dst && dst == src)
		return 0; /* Same inode (or same entry): rename(2) does nothing. */

	if (src_is_dir) {
		err = check_not_below(fs, to_dir, src);
		if (err)
			return err;
		if (from_dir != to_dir && !have_dst) {
			err = check_dir_links(fs, to_dir);
			if (err)
				return err;
		}
	}
	if (have_dst) {
		err = read_large(fs, dst, &dst_in);
		if (err)
			return err;
		dst_is_dir = LINUX_S_ISDIR(dst_in.i_mode);
		if (src_is_dir && !dst_is_dir)
			return ENOTDIR;
		if (!src_is_dir && dst_is_dir)
			return EISDIR;
		if (dst_is_dir) {
			err = dir_is_empty(fs, dst, &empty);
			if (err)
				return err;
			if (!empty)
				return ENOTEMPTY;
		}
		/* In place: the name never disappears and no space is needed. */
		err = replace_entry(fs, to_dir, to_name, src,
				    file_type_of(src_in.i_mode));
	} else {
		err = link_expand(fs, to_dir, to_name, src,
				  file_type_of(src_in.i_mode));
	}
	if (err)
		return err;

	err = unlink_entry(fs, from_dir, from_name, src);
	if (err)
		return err;
	if (src_is_dir && from_dir != to_dir) {
		err = set_dotdot(fs, src, to_dir);
		if (!err)
			err = adjust_dir_links(fs, from_dir, -1);
		/* A replaced directory's ".." already counted in to_dir. */
		if (!err && !dst_is_dir)
			err = adjust_dir_links(fs, to_dir, +1);
		if (err)
			return err;
	} else if (src_is_dir && dst_is_dir) {
		/* Same parent: it loses the replaced directory's "..". */
		err = adjust_dir_links(fs, to_dir, -1);
		if (err)
			return err;
	}
	if (have_dst) {
		err = dst_is_dir ? release_inode(fs, dst) : drop_link(fs, dst);
		if (err)
			return err;
	}
	err = read_large(fs, src, &src_in);
	if (!err) {
		SET_TIME(&src_in, ctime, now(fs));
		err = write_large(fs, src, &src_in);
	}
	if (!err)
		err = touch(fs, from_dir);
	if (!err && to_dir != from_dir)
		err = touch(fs, to_dir);
	return err;
}

/* ------------------------------------------------------------------ */
/* Attributes                                                           */

errcode_t snf_set_attr(ext2_filsys fs, uint32_t ino, uint32_t which,
		       uint32_t mode, uint32_t uid, uint32_t gid, int64_t atime,
		       int64_t mtime)
{
	struct ext2_inode_large in;
	errcode_t err = read_large(fs, ino, &in);

	if (err)
		return err;
	if (which & SNF_SET_MODE)
		in.i_mode = (in.i_mode & LINUX_S_IFMT) | (mode & 07777);
	if (which & SNF_SET_UID)
		set_owner(&in, uid, inode_gid(in));
	if (which & SNF_SET_GID)
		set_owner(&in, inode_uid(in), gid);
	if (which & SNF_SET_ATIME)
		SET_TIME(&in, atime, atime);
	if (which & SNF_SET_MTIME)
		SET_TIME(&in, mtime, mtime);
	SET_TIME(&in, ctime, now(fs));
	return write_large(fs, ino, &in);
}

errcode_t snf_xattr_set(ext2_filsys fs, uint32_t ino, const char *name,
			const void *value, size_t len)
{
	struct ext2_xattr_handle *h;
	errcode_t err, err2;

	if (strcmp(name, "system.data") == 0)
		return EINVAL;
	err = ext2fs_xattrs_open(fs, ino, &h);
	if (err)
		return err;
	err = ext2fs_xattrs_read(h);
	if (!err)
		err = ext2fs_xattr_set(h, name, value, len);
	err2 = ext2fs_xattrs_close(&h);
	return err ? err : err2;
}

errcode_t snf_xattr_remove(ext2_filsys fs, uint32_t ino, const char *name)
{
	struct ext2_xattr_handle *h;
	errcode_t err, err2;
	void *value = NULL;
	size_t len = 0;

	if (strcmp(name, "system.data") == 0)
		return EINVAL;
	err = ext2fs_xattrs_open(fs, ino, &h);
	if (err)
		return err;
	err = ext2fs_xattrs_read(h);
	/* ext2fs_xattr_remove succeeds on a missing key; report it instead. */
	if (!err)
		err = ext2fs_xattr_get(h, name, &value, &len);
	if (!err) {
		ext2fs_free_mem(&value);
		err = ext2fs_xattr_remove(h, name);
	}
	err2 = ext2fs_xattrs_close(&h);
	return err ? err : err2;
}
