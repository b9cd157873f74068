// taskrec.h: the fields of a task that outlive the broker.
//
// DESIGN. One list of fields, TASKREC_FIELDS, is what the store keeps of a
// task (store_rec), what events report, and what the loop's task record
// (task.h) begins with, as libuv's UV_HANDLE_FIELDS opens every handle. The
// loop's record holds the list in an anonymous union with a taskrec, so its
// fields read as t->id and the whole core copies as t->core: a field added
// here reaches the store, the loop and the conversions between them at once
// (then the schema, its statements in store.c and the wire's task info).
//
// Threads: plain data; whoever owns the record uses it.
// Ownership: every pointer is owned by the record that holds it, unless
// the holder says the record is a view (then nothing is freed through it).

#ifndef TASKREC_H
#define TASKREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <taskbroker/defs.h>

#define TASKREC_FIELDS                                    \
	uint64_t id;                                      \
	uint8_t  sid[TB_SID_LEN]; /* the submission id */ \
	char    *queue;                                   \
	char    *handler;                                 \
	uint8_t *payload;                                 \
	size_t   payload_len;                             \
	int32_t  priority;                                \
	uint32_t state; /* tb_state */                    \
	uint32_t attempts;                                \
	uint32_t max_attempts;                            \
	uint32_t crashes;     /* attempts cut short */    \
	uint32_t max_crashes; /* crashes to quarantine */ \
	uint32_t timeout_ms;                              \
	int64_t  run_at; /* Unix µs; earliest start */   \
	int64_t  created_at;                              \
	int64_t  started_at;                              \
	int64_t  finished_at;                             \
	uint8_t *result;                                  \
	size_t   result_len;                              \
	char    *error;                                   \
	char    *key;     /* idempotency key, or NULL */  \
	bool     forever; /* restarted whenever it ends */

// taskrec is a task's stored fields (see TASKREC_FIELDS).
typedef struct taskrec {
	TASKREC_FIELDS
} taskrec;

#endif // TASKREC_H
