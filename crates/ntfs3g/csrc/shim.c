/*
 * The C side of the libntfs-3g binding.
 *
 * It exists for two reasons: libntfs-3g's structures (ntfs_volume, ntfs_inode,
 * ntfs_attr ...) are large and version-dependent, so only this file, compiled against
 * the installed headers, touches their fields; and the volume must be read from a byte
 * range of an image file without a loop device, which takes a `struct
 * ntfs_device_operations` whose every call adds the range's base offset.
 *
 * Every function returns 0 or a positive errno value; inodes are opened and closed
 * within one call, so no libntfs-3g pointer but the volume crosses to Rust.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/fs.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/reparse.h>
#include <ntfs-3g/volume.h>

/* The byte range of the image file that holds the volume. */
struct range {
	int fd;
	uint64_t base;
	uint64_t size;
	int64_t pos;
};

static struct range *range_of(struct ntfs_device *dev)
{
	return (struct range *)dev->d_private;
}

static int err_or(int fallback)
{
	return errno > 0 ? errno : fallback;
}

/* Clamp a transfer of `count` bytes at `offset` to the range; -1 with errno if invalid. */
static int64_t clamp(struct range *r, int64_t count, int64_t offset)
{
	if (count < 0 || offset < 0) {
		errno = EINVAL;
		return -1;
	}
	if ((uint64_t)offset >= r->size)
		return 0;
	if ((uint64_t)count > r->size - (uint64_t)offset)
		count = (int64_t)(r->size - (uint64_t)offset);
	return count;
}

static int dev_open(struct ntfs_device *dev, int flags)
{
	if (NDevOpen(dev)) {
		errno = EBUSY;
		return -1;
	}
	if ((flags & O_ACCMODE) == O_RDONLY)
		NDevSetReadOnly(dev);
	else
		NDevClearReadOnly(dev);
	NDevSetOpen(dev);
	return 0;
}

static int dev_close(struct ntfs_device *dev)
{
	/* The descriptor belongs to the Rust side, which closes it after the unmount. */
	NDevClearOpen(dev);
	return 0;
}

static s64 dev_seek(struct ntfs_device *dev, s64 offset, int whence)
{
	struct range *r = range_of(dev);
	int64_t base;

	switch (whence) {
	case SEEK_SET: base = 0; break;
	case SEEK_CUR: base = r->pos; break;
	case SEEK_END: base = (int64_t)r->size; break;
	default: errno = EINVAL; return -1;
	}
	if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0) {
		errno = EINVAL;
		return -1;
	}
	r->pos = base + offset;
	return r->pos;
}

static s64 dev_pread(struct ntfs_device *dev, void *buf, s64 count, s64 offset)
{
	struct range *r = range_of(dev);
	int64_t n = clamp(r, count, offset), done = 0;

	while (done < n) {
		ssize_t got = pread(r->fd, (char *)buf + done, (size_t)(n - done),
				    (off_t)(r->base + (uint64_t)offset + (uint64_t)done));
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return done ? done : -1;
		}
		if (got == 0)
			break;
		done += got;
	}
	return n < 0 ? -1 : done;
}

static s64 dev_pwrite(struct ntfs_device *dev, const void *buf, s64 count, s64 offset)
{
	struct range *r = range_of(dev);
	int64_t n, done = 0;

	if (NDevReadOnly(dev)) {
		errno = EROFS;
		return -1;
	}
	n = clamp(r, count, offset);
	if (n < count && n >= 0) {
		/* Never write past the partition into its neighbour. */
		errno = ENOSPC;
		return -1;
	}
	while (done < n) {
		ssize_t put = pwrite(r->fd, (const char *)buf + done, (size_t)(n - done),
				     (off_t)(r->base + (uint64_t)offset + (uint64_t)done));
		if (put < 0) {
			if (errno == EINTR)
				continue;
			return done ? done : -1;
		}
		done += put;
	}
	NDevSetDirty(dev);
	return n < 0 ? -1 : done;
}

static s64 dev_read(struct ntfs_device *dev, void *buf, s64 count)
{
	struct range *r = range_of(dev);
	s64 got = dev_pread(dev, buf, count, r->pos);

	if (got > 0)
		r->pos += got;
	return got;
}

static s64 dev_write(struct ntfs_device *dev, const void *buf, s64 count)
{
	struct range *r = range_of(dev);
	s64 put = dev_pwrite(dev, buf, count, r->pos);

	if (put > 0)
		r->pos += put;
	return put;
}

static int dev_sync(struct ntfs_device *dev)
{
	if (NDevReadOnly(dev) || !NDevDirty(dev))
		return 0;
	if (fsync(range_of(dev)->fd))
		return -1;
	NDevClearDirty(dev);
	return 0;
}

static int dev_stat(struct ntfs_device *dev, struct stat *buf)
{
	struct range *r = range_of(dev);

	if (fstat(r->fd, buf))
		return -1;
	/* The volume is the range, not the whole file. */
	buf->st_mode = (buf->st_mode & ~S_IFMT) | S_IFREG;
	buf->st_size = (off_t)r->size;
	return 0;
}

static int dev_ioctl(struct ntfs_device *dev, unsigned long request, void *argp)
{
	struct range *r = range_of(dev);

	switch (request) {
	case BLKGETSIZE64:
		*(uint64_t *)argp = r->size;
		return 0;
	case BLKGETSIZE:
		*(unsigned long *)argp = (unsigned long)(r->size >> 9);
		return 0;
	case BLKSSZGET:
	case BLKBSZGET:
		*(int *)argp = 512;
		return 0;
	default:
		errno = ENOTTY;
		return -1;
	}
}

static struct ntfs_device_operations range_ops = {
	.open = dev_open,
	.close = dev_close,
	.seek = dev_seek,
	.read = dev_read,
	.write = dev_write,
	.pread = dev_pread,
	.pwrite = dev_pwrite,
	.sync = dev_sync,
	.stat = dev_stat,
	.ioctl = dev_ioctl,
};

/* Mounts the volume in bytes [base, base+size) of `fd`. */
int snf_ntfs_mount(int fd, uint64_t base, uint64_t size, int read_only, ntfs_volume **out)
{
	struct range *r;
	struct ntfs_device *dev;
	ntfs_volume *vol;
	int err;

	*out = NULL;
	if (size == 0 || base > UINT64_MAX - size || base + size > (uint64_t)INT64_MAX)
		return EINVAL;
	/* libntfs-3g prints to stderr by default; the Rust side reports errno instead. */
	ntfs_log_set_handler(ntfs_log_handler_null);
	r = calloc(1, sizeof(*r));
	if (!r)
		return ENOMEM;
	r->fd = fd;
	r->base = base;
	r->size = size;
	dev = ntfs_device_alloc("snf-image-volume", 0, &range_ops, r);
	if (!dev) {
		err = err_or(ENOMEM);
		free(r);
		return err;
	}
	errno = 0;
	vol = ntfs_device_mount(dev, read_only ? NTFS_MNT_RDONLY : NTFS_MNT_NONE);
	if (!vol) {
		err = err_or(EIO);
		/* A failed mount leaves the device allocated (and maybe open). */
		if (NDevOpen(dev))
			dev->d_ops->close(dev);
		ntfs_device_free(dev);
		free(r);
		return err;
	}
	/*
	 * The defaults list hidden and system files (pagefile.sys, ProgramData ...) and the
	 * metadata files, which the Rust side leaves out. Names are compared with case
	 * (see lookup_nocase).
	 */
	*out = vol;
	return 0;
}

int snf_ntfs_umount(ntfs_volume *vol)
{
	struct range *r = range_of(vol->dev);
	int rc = ntfs_umount(vol, FALSE);
	int err = rc ? err_or(EIO) : 0;

	free(r);
	return err;
}

struct snf_ntfs_volinfo {
	uint64_t cluster_size;
	uint64_t nr_clusters;
	uint64_t free_clusters;
	uint32_t flags;
	uint8_t major_ver;
	uint8_t minor_ver;
	uint8_t read_only;
	uint8_t pad;
};

int snf_ntfs_volinfo(ntfs_volume *vol, struct snf_ntfs_volinfo *out)
{
	memset(out, 0, sizeof(*out));
	if (ntfs_volume_get_free_space(vol))
		return err_or(EIO);
	out->cluster_size = vol->cluster_size;
	out->nr_clusters = (uint64_t)vol->nr_clusters;
	out->free_clusters = vol->free_clusters < 0 ? 0 : (uint64_t)vol->free_clusters;
	out->flags = le16_to_cpu(vol->flags);
	out->major_ver = vol->major_ver;
	out->minor_ver = vol->minor_ver;
	out->read_only = NVolReadOnly(vol) ? 1 : 0;
	return 0;
}

/* 0 when Windows is not hibernated (no hiberfil.sys or a zeroed header), else EPERM. */
int snf_ntfs_check_hiberfile(ntfs_volume *vol)
{
	errno = 0;
	if (ntfs_volume_check_hiberfile(vol, 0) < 0)
		return err_or(EIO);
	return 0;
}

/* Copies of the clusters-in-use bitmap: bit n set when cluster n is allocated. */
int snf_ntfs_read_bitmap(ntfs_volume *vol, uint8_t *buf, uint64_t len)
{
	s64 got;

	if (!vol->lcnbmp_na)
		return EINVAL;
	got = ntfs_attr_pread(vol->lcnbmp_na, 0, (s64)len, buf);
	if (got < 0)
		return err_or(EIO);
	if ((uint64_t)got < len)
		memset(buf + got, 0, len - (uint64_t)got);
	return 0;
}

static int open_inode(ntfs_volume *vol, uint64_t ino, ntfs_inode **ni)
{
	if (ino > MFT_REF_MASK_CPU) {
		*ni = NULL;
		return ENOENT;
	}
	*ni = ntfs_inode_open(vol, (MFT_REF)ino);
	return *ni ? 0 : err_or(EIO);
}

static int close_inode(ntfs_inode *ni, int err)
{
	if (ntfs_inode_close(ni) && !err)
		return err_or(EIO);
	return err;
}

/*
 * Windows looks names up ignoring case: so does this. The volume stays case-sensitive
 * otherwise, because in the other mode ntfs_readdir lower-cases every name it lists.
 */
static u64 lookup_nocase(ntfs_inode *dni, const uint16_t *name, int len)
{
	ntfs_volume *vol = dni->vol;
	u64 mref;

	NVolClearCaseSensitive(vol);
	mref = ntfs_inode_lookup_by_name(dni, (const ntfschar *)name, len);
	NVolSetCaseSensitive(vol);
	return mref;
}

int snf_ntfs_lookup(ntfs_volume *vol, uint64_t dir, const uint16_t *name, int len,
		    uint64_t *out)
{
	ntfs_inode *dni;
	u64 mref;
	int err = open_inode(vol, dir, &dni);

	*out = 0;
	if (err)
		return err;
	errno = 0;
	mref = lookup_nocase(dni, name, len);
	if (mref == (u64)-1)
		err = err_or(ENOENT);
	else
		*out = MREF(mref);
	return close_inode(dni, err);
}

struct snf_ntfs_stat {
	uint64_t data_size;
	uint64_t allocated;
	int64_t creation_time;
	int64_t mtime;
	int64_t ctime;
	int64_t atime;
	uint32_t attributes;
	uint32_t is_dir;
	uint32_t links;
	uint32_t has_data;
};

int snf_ntfs_stat(ntfs_volume *vol, uint64_t ino, struct snf_ntfs_stat *out)
{
	ntfs_inode *ni;
	ntfs_attr *na;
	int err = open_inode(vol, ino, &ni);

	memset(out, 0, sizeof(*out));
	if (err)
		return err;
	out->is_dir = (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) ? 1 : 0;
	out->attributes = le32_to_cpu(ni->flags);
	out->links = le16_to_cpu(ni->mrec->link_count);
	out->creation_time = (int64_t)sle64_to_cpu(ni->creation_time);
	out->mtime = (int64_t)sle64_to_cpu(ni->last_data_change_time);
	out->ctime = (int64_t)sle64_to_cpu(ni->last_mft_change_time);
	out->atime = (int64_t)sle64_to_cpu(ni->last_access_time);
	if (!out->is_dir) {
		na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
		if (na) {
			out->has_data = 1;
			out->data_size = (uint64_t)na->data_size;
			if (na->data_flags & (ATTR_IS_COMPRESSED | ATTR_IS_SPARSE))
				out->allocated = (uint64_t)na->compressed_size;
			else if (NAttrNonResident(na))
				out->allocated = (uint64_t)na->allocated_size;
			ntfs_attr_close(na);
		} else if (errno != ENOENT) {
			err = err_or(EIO);
		}
	}
	return close_inode(ni, err);
}

typedef int (*snf_filldir)(void *ctx, const uint16_t *name, int name_len, int name_type,
			   uint64_t mref, unsigned dt_type);

struct filldir_ctx {
	snf_filldir cb;
	void *ctx;
};

static int filldir_trampoline(void *dirent, const ntfschar *name, const int name_len,
			      const int name_type, const s64 pos, const MFT_REF mref,
			      const unsigned dt_type)
{
	struct filldir_ctx *f = dirent;

	(void)pos;
	return f->cb(f->ctx, (const uint16_t *)name, name_len, name_type, MREF(mref), dt_type);
}

int snf_ntfs_readdir(ntfs_volume *vol, uint64_t dir, snf_filldir cb, void *ctx)
{
	ntfs_inode *dni;
	s64 pos = 0;
	struct filldir_ctx f = { cb, ctx };
	int err = open_inode(vol, dir, &dni);

	if (err)
		return err;
	if (!(dni->mrec->flags & MFT_RECORD_IS_DIRECTORY))
		err = ENOTDIR;
	else if (ntfs_readdir(dni, &pos, &f, filldir_trampoline))
		err = err_or(EIO);
	return close_inode(dni, err);
}

static int open_data(ntfs_volume *vol, uint64_t ino, ntfs_inode **ni, ntfs_attr **na)
{
	int err = open_inode(vol, ino, ni);

	*na = NULL;
	if (err)
		return err;
	if ((*ni)->mrec->flags & MFT_RECORD_IS_DIRECTORY) {
		ntfs_inode_close(*ni);
		return EISDIR;
	}
	*na = ntfs_attr_open(*ni, AT_DATA, AT_UNNAMED, 0);
	if (!*na) {
		err = err_or(EIO);
		ntfs_inode_close(*ni);
		return err;
	}
	return 0;
}

int snf_ntfs_read(ntfs_volume *vol, uint64_t ino, uint64_t offset, void *buf, uint64_t len,
		  uint64_t *got)
{
	ntfs_inode *ni;
	ntfs_attr *na;
	int err = open_data(vol, ino, &ni, &na);
	s64 n;

	*got = 0;
	if (err)
		return err;
	if (offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX) {
		err = EINVAL;
	} else {
		n = ntfs_attr_pread(na, (s64)offset, (s64)len, buf);
		if (n < 0)
			err = err_or(EIO);
		else
			*got = (uint64_t)n;
	}
	ntfs_attr_close(na);
	return close_inode(ni, err);
}

int snf_ntfs_write(ntfs_volume *vol, uint64_t ino, uint64_t offset, const void *buf,
		   uint64_t len)
{
	ntfs_inode *ni;
	ntfs_attr *na;
	int err = open_data(vol, ino, &ni, &na);
	uint64_t done = 0;

	if (err)
		return err;
	if (offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
		err = EFBIG;
	while (!err && done < len) {
		s64 n = ntfs_attr_pwrite(na, (s64)(offset + done), (s64)(len - done),
					 (const char *)buf + done);
		if (n <= 0)
			err = err_or(EIO);
		else
			done += (uint64_t)n;
	}
	if (!err) {
		ntfs_inode_update_times(ni, NTFS_UPDATE_MCTIME);
		NInoFileNameSetDirty(ni);
	}
	ntfs_attr_close(na);
	return close_inode(ni, err);
}

int snf_ntfs_truncate(ntfs_volume *vol, uint64_t ino, uint64_t size)
{
	ntfs_inode *ni;
	ntfs_attr *na;
	int err = open_data(vol, ino, &ni, &na);

	if (err)
		return err;
	if (size > (uint64_t)INT64_MAX)
		err = EFBIG;
	else if (ntfs_attr_truncate(na, (s64)size))
		err = err_or(EIO);
	if (!err) {
		ntfs_inode_update_times(ni, NTFS_UPDATE_MCTIME);
		NInoFileNameSetDirty(ni);
	}
	ntfs_attr_close(na);
	return close_inode(ni, err);
}

static int check_name(int len)
{
	return (len <= 0 || len > NTFS_MAX_NAME_LEN) ? ENAMETOOLONG : 0;
}

/* Creates a file (`is_dir` 0) or directory named `name` in `dir`. */
int snf_ntfs_create(ntfs_volume *vol, uint64_t dir, const uint16_t *name, int len, int is_dir,
		    uint64_t *out)
{
	ntfs_inode *dni, *ni;
	u64 existing;
	int err = check_name(len);

	*out = 0;
	if (err)
		return err;
	err = open_inode(vol, dir, &dni);
	if (err)
		return err;
	existing = lookup_nocase(dni, name, len);
	if (existing != (u64)-1)
		return close_inode(dni, EEXIST);
	ni = ntfs_create(dni, const_cpu_to_le32(0), (const ntfschar *)name, (u8)len,
			 is_dir ? S_IFDIR : S_IFREG);
	if (!ni) {
		err = err_or(EIO);
	} else {
		*out = ni->mft_no;
		err = close_inode(ni, 0);
	}
	return close_inode(dni, err);
}

/*
 * Removes `name` from `dir`; with `want_dir` 1 only an (empty) directory, with 0 only a
 * non-directory.
 */
int snf_ntfs_unlink(ntfs_volume *vol, uint64_t dir, const uint16_t *name, int len, int want_dir)
{
	ntfs_inode *dni, *ni;
	u64 mref;
	int err = check_name(len);

	if (err)
		return err;
	err = open_inode(vol, dir, &dni);
	if (err)
		return err;
	errno = 0;
	mref = lookup_nocase(dni, name, len);
	if (mref == (u64)-1)
		return close_inode(dni, err_or(ENOENT));
	if (MREF(mref) < FILE_first_user)
		return close_inode(dni, EPERM);
	ni = ntfs_inode_open(vol, MREF(mref));
	if (!ni)
		return close_inode(dni, err_or(EIO));
	if (!!(ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) != !!want_dir) {
		err = want_dir ? ENOTDIR : EISDIR;
		ntfs_inode_close(ni);
		return close_inode(dni, err);
	}
	/*
	 * ntfs_delete closes both `ni` and `dni`, whatever happens. It matches `name`
	 * against the object's names again: ignoring case, as the lookup did.
	 */
	NVolClearCaseSensitive(vol);
	if (ntfs_delete(vol, NULL, ni, dni, (const ntfschar *)name, (u8)len))
		err = err_or(EIO);
	NVolSetCaseSensitive(vol);
	return err;
}

/* Adds the name `name` in `dir` for the existing inode `ino`. */
int snf_ntfs_link(ntfs_volume *vol, uint64_t ino, uint64_t dir, const uint16_t *name, int len)
{
	ntfs_inode *dni, *ni;
	int err = check_name(len);

	if (err)
		return err;
	if (ino == dir)
		return EINVAL;
	err = open_inode(vol, dir, &dni);
	if (err)
		return err;
	if (lookup_nocase(dni, name, len) != (u64)-1)
		return close_inode(dni, EEXIST);
	err = open_inode(vol, ino, &ni);
	if (err)
		return close_inode(dni, err);
	if (ntfs_link(ni, dni, (const ntfschar *)name, (u8)len))
		err = err_or(EIO);
	err = close_inode(ni, err);
	return close_inode(dni, err);
}

/* The directory holding (the first name of) `ino`; the root is its own parent. */
int snf_ntfs_parent(ntfs_volume *vol, uint64_t ino, uint64_t *parent)
{
	ntfs_inode *ni, *pni;
	int err = open_inode(vol, ino, &ni);

	*parent = 0;
	if (err)
		return err;
	if (ni->mft_no == FILE_root) {
		*parent = FILE_root;
		return close_inode(ni, 0);
	}
	errno = 0;
	pni = ntfs_dir_parent_inode(ni);
	if (!pni)
		return close_inode(ni, err_or(EIO));
	*parent = pni->mft_no;
	err = close_inode(pni, 0);
	return close_inode(ni, err);
}

/* The raw reparse data of `ino` into `buf`; `*size` is its full length (ENODATA if none). */
int snf_ntfs_get_reparse(ntfs_volume *vol, uint64_t ino, void *buf, uint64_t cap,
			 uint64_t *size)
{
	ntfs_inode *ni;
	int n, err = open_inode(vol, ino, &ni);

	*size = 0;
	if (err)
		return err;
	if (!(ni->flags & FILE_ATTR_REPARSE_POINT))
		return close_inode(ni, ENODATA);
	errno = 0;
	n = ntfs_get_ntfs_reparse_data(ni, buf, cap > INT_MAX ? INT_MAX : (size_t)cap);
	if (n < 0)
		err = err_or(EIO);
	else
		*size = (uint64_t)n;
	return close_inode(ni, err);
}

int snf_ntfs_set_reparse(ntfs_volume *vol, uint64_t ino, const void *buf, uint64_t size)
{
	ntfs_inode *ni;
	int err = open_inode(vol, ino, &ni);

	if (err)
		return err;
	if (size > INT_MAX)
		err = EINVAL;
	else {
		/* As tested with ntfs-3g 2022.10: fails with EINVAL on a case-sensitive volume. */
		NVolClearCaseSensitive(vol);
		if (ntfs_set_ntfs_reparse_data(ni, buf, (size_t)size, 0))
			err = err_or(EIO);
		NVolSetCaseSensitive(vol);
	}
	return close_inode(ni, err);
}

/* Sets the access and modification times (NTFS units); a negative value keeps one. */
int snf_ntfs_set_times(ntfs_volume *vol, uint64_t ino, int64_t atime, int64_t mtime)
{
	ntfs_inode *ni;
	int err = open_inode(vol, ino, &ni);

	if (err)
		return err;
	if (atime >= 0)
		ni->last_access_time = cpu_to_sle64(atime);
	if (mtime >= 0)
		ni->last_data_change_time = cpu_to_sle64(mtime);
	ntfs_inode_update_times(ni, NTFS_UPDATE_CTIME);
	ntfs_inode_mark_dirty(ni);
	NInoFileNameSetDirty(ni);
	return close_inode(ni, 0);
}

int snf_ntfs_sync(ntfs_volume *vol)
{
	if (ntfs_device_sync(vol->dev))
		return err_or(EIO);
	return 0;
}

_Static_assert(sizeof(struct snf_ntfs_volinfo) == 32, "volinfo layout");
_Static_assert(sizeof(struct snf_ntfs_stat) == 64, "stat layout");
