/* The seam between fio and pvback's blkfront: fio_glue.c (C, compiled against fio's headers) calls
 * these; engine.cpp (C++, no fio header) implements them over blkfront::BlkFront. Every function
 * returns 0 or an errno value and, on error, a message naming the device in err[PVBACK_FIO_ERR].
 *
 * A "vbd name" is fio's filename: a devid of the guest PVBACK_DOMID ("51712"), a Linux name for
 * one ("xvda" = 51712, ..., "xvdp"), or a frontend path ("/local/domain/1/device/vbd/51712", whose
 * domain is then the guest unless PVBACK_DOMID says otherwise). */
#ifndef PVBACK_FIOENGINE_PVBACK_FIO_H
#define PVBACK_FIOENGINE_PVBACK_FIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PVBACK_FIO_ERR 256
#define PVBACK_FIO_PATH 128

struct pvback_fio_job;

struct pvback_fio_params {
  const char *job_name;
  unsigned iodepth;
  unsigned long long max_bs;
  unsigned queues;       /* queues to negotiate; 0: the number of jobs of this fio on the vbd */
  unsigned ring_order;   /* max-ring-page-order the frontend asks for */
  unsigned indirect;     /* max indirect segments (0: none) */
  unsigned persistent;   /* feature-persistent */
  unsigned zero_copy;    /* fio's buffers in pages granted to the backend */
};

enum pvback_fio_op { PVBACK_FIO_READ, PVBACK_FIO_WRITE, PVBACK_FIO_TRIM };

/* The frontend path a vbd name stands for (no XenStore access). */
int pvback_fio_resolve(const char *name, char path[PVBACK_FIO_PATH], char err[PVBACK_FIO_ERR]);

/* The vbd's size in bytes as its backend published it, read from XenStore without attaching
 * (waits up to 10 s for a backend that has not reached InitWait yet). */
int pvback_fio_probe(const char *name, unsigned long long *bytes, char err[PVBACK_FIO_ERR]);

int pvback_fio_job_create(const struct pvback_fio_params *params, struct pvback_fio_job **job,
                          char err[PVBACK_FIO_ERR]);
/* Attaches to the vbd (or joins this process's frontend on it, opened by another job) and takes a
 * queue of its own. `jobs_on_vbd`: how many jobs of this fio name it (the queues asked for when
 * params->queues is 0). *file_index receives the handle for submit. */
int pvback_fio_job_add_file(struct pvback_fio_job *job, const char *name, unsigned jobs_on_vbd, unsigned *file_index,
                            char err[PVBACK_FIO_ERR]);
/* fio's I/O buffers: `bytes` granted to the backend of the job's first vbd (zero copy there), or
 * ordinary page-aligned memory (params->zero_copy 0, or granting failed: copied through the
 * frontend's pool then; the log says why). NULL only when no memory could be had at all. */
void *pvback_fio_job_alloc_buffers(struct pvback_fio_job *job, size_t bytes);
/* Releases them (pages granted to a backend are released once the frontend has detached). */
void pvback_fio_job_free_buffers(struct pvback_fio_job *job);
/* Queues one operation (published at commit). 0, EAGAIN (ring or pool full: reap first), or the
 * request's error. `cookie` comes back from reap. */
int pvback_fio_job_submit(struct pvback_fio_job *job, unsigned file_index, enum pvback_fio_op op, uint64_t offset,
                          void *buffer, uint64_t length, void *cookie);
/* fsync/fdatasync: waits for the job's requests in flight (their completions come from the next
 * reap), then a flush (blkif's, or a barrier when only that is offered), waited for: its error or 0. */
int pvback_fio_job_flush(struct pvback_fio_job *job, unsigned file_index);
int pvback_fio_job_commit(struct pvback_fio_job *job);
/* Waits for at least `min` completions (timeout_ns < 0: no limit), returns up to `max` in cookies/
 * errors (0 or an errno value per operation); the count, or -errno. */
int pvback_fio_job_reap(struct pvback_fio_job *job, unsigned min, unsigned max, long long timeout_ns, void **cookies,
                        int *errors);
/* Leaves the vbds (the last job on one detaches the frontend). */
void pvback_fio_job_destroy(struct pvback_fio_job *job);

#ifdef __cplusplus
}
#endif

#endif
