/* fio's side of the pvback engine: fio's ioengine_ops over pvback_fio.h. Compiled against the
 * source of the fio that loads it (scripts/fio-source.sh; FIO_IOOPS_VERSION must match, which fio
 * checks when it loads the engine). Only this file sees fio's headers.
 *
 *   fio --ioengine=external:build/fioengine/pvback-fio.so --filename=51712 ...   (PVBACK_DOMID=1)
 *
 * What maps to what: a job's file is a vbd of the guest PVBACK_DOMID, attached through the
 * userspace blkfront; iodepth is requests in flight on the job's ring; each job on a vbd has a ring
 * (queue) of its own, so numjobs=N asks the backend for N queues and, since the jobs then share
 * one frontend, needs thread=1; read/write/trim are blkif read/write/discard, fsync/fdatasync a
 * blkif flush (barrier when only that is offered); fio's buffers are granted to the backend. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fio.h"
#include "optgroup.h"

#include "fioengine/pvback_fio.h"

struct pvback_options {
	void *pad; /* fio's engine option structs start with a pointer-sized slot */
	unsigned int queues;
	unsigned int ring_order;
	unsigned int indirect;
	unsigned int persistent;
	unsigned int zero_copy;
};

static struct fio_option options[] = {
	{
		.name = "pvback_queues",
		.lname = "pvback queues",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct pvback_options, queues),
		.def = "0",
		.minval = 0,
		.maxval = 64,
		.help = "Queues the frontend asks for (0: one per job of this fio on the vbd)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "pvback_ring_order",
		.lname = "pvback ring page order",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct pvback_options, ring_order),
		.def = "4",
		.minval = 0,
		.maxval = 8,
		.help = "Ring pages per queue the frontend asks for, as a power of two (4: 16 pages, 512 requests)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "pvback_indirect",
		.lname = "pvback indirect segments",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct pvback_options, indirect),
		.def = "256",
		.minval = 0,
		.maxval = 4096,
		.help = "Segments per request with indirect descriptors (0: none, 11 pages a request)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "pvback_persistent",
		.lname = "pvback persistent grants",
		.type = FIO_OPT_BOOL,
		.off1 = offsetof(struct pvback_options, persistent),
		.def = "1",
		.help = "Offer persistent grants (feature-persistent)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "pvback_zero_copy",
		.lname = "pvback zero copy",
		.type = FIO_OPT_BOOL,
		.off1 = offsetof(struct pvback_options, zero_copy),
		.def = "1",
		.help = "Grant fio's buffers to the backend (0: copy through the frontend's pool, as Linux blkfront does with persistent grants)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = NULL,
	},
};

struct pvback_data {
	struct pvback_fio_job *job;
	struct io_u **events;
	void **cookies;
	int *errors;
	unsigned int max_events;
};

static unsigned int file_index(struct fio_file *f)
{
	return (unsigned int) (uintptr_t) FILE_ENG_DATA(f) - 1;
}

static void pvback_cleanup(struct thread_data *td)
{
	struct pvback_data *d = td->io_ops_data;

	if (!d)
		return;
	pvback_fio_job_destroy(d->job);
	free(d->events);
	free(d->cookies);
	free(d->errors);
	free(d);
	td->io_ops_data = NULL;
}

/* How many jobs of this fio name the vbd at `path`: its frontend is shared by them. */
static unsigned int jobs_on_vbd(const char *path)
{
	struct thread_data *other;
	struct fio_file *f;
	unsigned int count = 0, j;
	char other_path[PVBACK_FIO_PATH], err[PVBACK_FIO_ERR];
	int i;

	for_each_td(other, i) {
		if (!other->io_ops || !other->io_ops->name || strcmp(other->io_ops->name, "pvback") != 0)
			continue;
		for_each_file(other, f, j) {
			if (pvback_fio_resolve(f->file_name, other_path, err) == 0 && strcmp(other_path, path) == 0) {
				count++;
				break;
			}
		}
	}
	return count;
}

static int pvback_init(struct thread_data *td)
{
	struct pvback_options *o = td->eo;
	struct pvback_fio_params params = {
		.job_name = td->o.name,
		.iodepth = td->o.iodepth,
		.max_bs = td_max_bs(td),
		.queues = o->queues,
		.ring_order = o->ring_order,
		.indirect = o->indirect,
		.persistent = o->persistent,
		.zero_copy = o->zero_copy,
	};
	char err[PVBACK_FIO_ERR] = "", path[PVBACK_FIO_PATH];
	struct pvback_data *d;
	struct fio_file *f;
	unsigned int i;
	int e;

	d = calloc(1, sizeof(*d));
	if (!d)
		return 1;
	td->io_ops_data = d;
	d->max_events = td->o.iodepth ? td->o.iodepth : 1;
	d->events = calloc(d->max_events, sizeof(*d->events));
	d->cookies = calloc(d->max_events, sizeof(*d->cookies));
	d->errors = calloc(d->max_events, sizeof(*d->errors));
	if (!d->events || !d->cookies || !d->errors) {
		pvback_cleanup(td);
		return 1;
	}
	e = pvback_fio_job_create(&params, &d->job, err);
	if (e)
		goto fail;
	for_each_file(td, f, i) {
		unsigned int jobs, index;

		e = pvback_fio_resolve(f->file_name, path, err);
		if (e)
			goto fail;
		jobs = jobs_on_vbd(path);
		if (jobs > 1 && !td->o.use_thread) {
			snprintf(err, sizeof(err),
				 "pvback: %s is named by %u jobs of this fio: they share one frontend on it, "
				 "a queue each, and so must be threads of one process: set thread=1",
				 f->file_name, jobs);
			e = EINVAL;
			goto fail;
		}
		e = pvback_fio_job_add_file(d->job, f->file_name, jobs, &index, err);
		if (e)
			goto fail;
		FILE_SET_ENG_DATA(f, (void *) (uintptr_t) (index + 1));
	}
	return 0;
fail:
	log_err("fio: %s\n", err);
	td_vmsg(td, e, err, "pvback init");
	pvback_cleanup(td);
	return 1;
}

/* File sizes: what each vbd's backend published (called in fio's main process before the jobs
 * start, without attaching). */
static int pvback_setup(struct thread_data *td)
{
	char err[PVBACK_FIO_ERR] = "";
	struct fio_file *f;
	unsigned int i;

	for_each_file(td, f, i) {
		unsigned long long bytes;
		int e = pvback_fio_probe(f->file_name, &bytes, err);

		if (e) {
			log_err("fio: %s\n", err);
			td_vmsg(td, e, err, "pvback setup");
			return 1;
		}
		f->real_file_size = bytes;
		f->filetype = FIO_TYPE_BLOCK;
		fio_file_set_size_known(f);
	}
	return 0;
}

static int pvback_open_file(struct thread_data *td, struct fio_file *f)
{
	(void) td;
	(void) f;
	return 0;
}

static int pvback_close_file(struct thread_data *td, struct fio_file *f)
{
	(void) td;
	(void) f;
	return 0;
}

static enum fio_q_status pvback_queue(struct thread_data *td, struct io_u *io_u)
{
	struct pvback_data *d = td->io_ops_data;
	enum pvback_fio_op op;
	int e;

	fio_ro_check(td, io_u);
	switch (io_u->ddir) {
	case DDIR_READ:
		op = PVBACK_FIO_READ;
		break;
	case DDIR_WRITE:
		op = PVBACK_FIO_WRITE;
		break;
	case DDIR_TRIM:
		op = PVBACK_FIO_TRIM;
		break;
	case DDIR_SYNC:
	case DDIR_DATASYNC:
		io_u->error = pvback_fio_job_flush(d->job, file_index(io_u->file));
		return FIO_Q_COMPLETED;
	default:
		/* sync_file_range: blkif has no ranged flush. */
		io_u->error = EOPNOTSUPP;
		return FIO_Q_COMPLETED;
	}
	e = pvback_fio_job_submit(d->job, file_index(io_u->file), op, io_u->offset, io_u->xfer_buf,
				  io_u->xfer_buflen, io_u);
	if (e == 0)
		return FIO_Q_QUEUED;
	if (e == EAGAIN)
		return FIO_Q_BUSY;
	io_u->error = e;
	return FIO_Q_COMPLETED;
}

static int pvback_commit(struct thread_data *td)
{
	struct pvback_data *d = td->io_ops_data;
	int e = pvback_fio_job_commit(d->job);

	if (e) {
		td_verror(td, e, "pvback commit");
		return -e;
	}
	return 0;
}

static int pvback_getevents(struct thread_data *td, unsigned int min, unsigned int max, const struct timespec *t)
{
	struct pvback_data *d = td->io_ops_data;
	long long timeout_ns = t ? (long long) t->tv_sec * 1000000000LL + t->tv_nsec : -1;
	int n, i;

	if (max > d->max_events)
		max = d->max_events;
	n = pvback_fio_job_reap(d->job, min, max, timeout_ns, d->cookies, d->errors);
	for (i = 0; i < n; i++) {
		struct io_u *io_u = d->cookies[i];

		io_u->error = d->errors[i];
		io_u->resid = d->errors[i] ? io_u->xfer_buflen : 0;
		d->events[i] = io_u;
	}
	return n;
}

static struct io_u *pvback_event(struct thread_data *td, int event)
{
	struct pvback_data *d = td->io_ops_data;

	return d->events[event];
}

static int pvback_iomem_alloc(struct thread_data *td, size_t total_mem)
{
	struct pvback_data *d = td->io_ops_data;

	td->orig_buffer = pvback_fio_job_alloc_buffers(d->job, total_mem);
	return td->orig_buffer == NULL;
}

static void pvback_iomem_free(struct thread_data *td)
{
	struct pvback_data *d = td->io_ops_data;

	if (d)
		pvback_fio_job_free_buffers(d->job);
}

__attribute__((visibility("default"))) struct ioengine_ops ioengine = {
	.name = "pvback",
	.version = FIO_IOOPS_VERSION,
	/* No offload: a job's requests are submitted and reaped by the job's own thread. */
	.flags = FIO_DISKLESSIO | FIO_NOEXTEND | FIO_NODISKUTIL | FIO_RAWIO | FIO_MEMALIGN | FIO_NO_OFFLOAD,
	.init = pvback_init,
	.setup = pvback_setup,
	.queue = pvback_queue,
	.commit = pvback_commit,
	.getevents = pvback_getevents,
	.event = pvback_event,
	.cleanup = pvback_cleanup,
	.open_file = pvback_open_file,
	.close_file = pvback_close_file,
	.iomem_alloc = pvback_iomem_alloc,
	.iomem_free = pvback_iomem_free,
	.option_struct_size = sizeof(struct pvback_options),
	.options = options,
};
