/* Where a training process stands in a data-parallel group, from its launcher's environment
 * (torchrun or SLURM's srun): ps_train_dist_from_env (ps_train.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_train.h"

/* An environment integer: 0 when absent (*set 0), PS_EINVAL when present but not an integer >= 0. */
static int env_int(const char *name, int *out, int *set) {
  const char *v = getenv(name);
  *set = 0;
  if (!v || !*v) return PS_OK;
  char *end = NULL;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end || x < 0 || x > INT_MAX)
    return ps_error(PS_EINVAL, "train: %s=%s is not a whole number >= 0", name, v);
  *out = (int)x, *set = 1;
  return PS_OK;
}

/* The first host of a SLURM node list: "node[07-09,12],gpu3" -> "node07". */
static int first_host(const char *list, char *out, size_t cap) {
  size_t i = 0, o = 0;
  while (list[i] && list[i] != ',' && list[i] != '[' && o + 1 < cap) out[o++] = list[i++];
  if (list[i] == '[') {
    i++;
    while (list[i] && list[i] != '-' && list[i] != ',' && list[i] != ']' && o + 1 < cap) out[o++] = list[i++];
  }
  out[o] = 0;
  return o > 0 ? PS_OK : ps_error(PS_EINVAL, "train: cannot read a host from the SLURM node list '%s'", list);
}

int ps_train_dist_from_env(ps_train_dist *d, char *addr, size_t cap) {
  if (!d || !addr || cap < 2) return ps_error(PS_EINVAL, "train: NULL argument");
  memset(d, 0, sizeof *d);
  d->world_size = 1;
  addr[0] = 0;
  int rank = 0, world = 0, local = 0, local_world = 0, port = 0, restart = 0, has_rank, has_world, has_local,
      has_lw, has_port, has_restart, st;
  const char *who;
  if ((st = env_int("RANK", &rank, &has_rank)) || (st = env_int("WORLD_SIZE", &world, &has_world))) return st;
  if (has_rank || has_world) { /* torchrun (or any env:// launcher) */
    who = "torchrun";
    if (!has_rank || !has_world) return ps_error(PS_EINVAL, "train: RANK and WORLD_SIZE must be set together");
    if ((st = env_int("LOCAL_RANK", &local, &has_local)) || (st = env_int("LOCAL_WORLD_SIZE", &local_world, &has_lw)) ||
        (st = env_int("TORCHELASTIC_RESTART_COUNT", &restart, &has_restart)))
      return st;
    const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    d->agent_store = agent && (!strcmp(agent, "True") || !strcmp(agent, "true") || !strcmp(agent, "1"));
    d->restart_count = restart;
  } else { /* srun: one task per rank */
    int procid = 0, ntasks = 0, has_proc, has_nt;
    if ((st = env_int("SLURM_PROCID", &procid, &has_proc)) || (st = env_int("SLURM_STEP_NUM_TASKS", &ntasks, &has_nt)))
      return st;
    if (!has_proc || !has_nt || ntasks <= 1) return PS_OK; /* one process (also a batch script's own shell) */
    who = "SLURM";
    rank = procid, world = ntasks;
    if ((st = env_int("SLURM_LOCALID", &local, &has_local))) return st;
    const char *tpn = getenv("SLURM_STEP_TASKS_PER_NODE"); /* "2(x4)" or "2,1": this node's count first */
    if (tpn && *tpn) local_world = atoi(tpn);
  }
  if (world < 1 || rank >= world)
    return ps_error(PS_EINVAL, "train: %s gives rank %d in a world of %d", who, rank, world);
  if (world == 1) return PS_OK;
  const char *ma = getenv("MASTER_ADDR");
  if (ma && *ma) {
    if (strlen(ma) >= cap) return ps_error(PS_EINVAL, "train: MASTER_ADDR is too long");
    strcpy(addr, ma);
  } else {
    const char *nl = getenv("SLURM_STEP_NODELIST");
    if (!nl || !*nl) nl = getenv("SLURM_JOB_NODELIST");
    if (!nl || !*nl)
      return ps_error(PS_EINVAL, "train: %d ranks but no MASTER_ADDR (set it to rank 0's host name or address)", world);
    if ((st = first_host(nl, addr, cap))) return st;
  }
  if ((st = env_int("MASTER_PORT", &port, &has_port))) return st;
  if (!has_port) {
    if (!strcmp(who, "torchrun")) return ps_error(PS_EINVAL, "train: %d ranks but no MASTER_PORT", world);
    port = 29500; /* torch.distributed's default */
  }
  if (port < 1 || port > 65535) return ps_error(PS_EINVAL, "train: MASTER_PORT %d out of range 1..65535", port);
  d->world_size = world, d->rank = rank, d->local_rank = local, d->local_world_size = local_world;
  d->master_addr = addr, d->master_port = port;
  return PS_OK;
}
