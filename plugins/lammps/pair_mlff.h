/* pair_style mlff: distilled machine-learned force fields evaluated by libmlff.
 *
 *   pair_style mlff MODEL [device auto|cpu|cuda] [precision f32|f64|mixed]
 *   pair_coeff * * Elem1 Elem2 ...      (element of each atom type)
 *
 * mlff builds its own graph from positions, so this style needs no LAMMPS
 * neighbour list: it hands libmlff the local atoms plus the ghost shell
 * (layers x cutoff deep) and lets LAMMPS sum ghost forces back (newton on).
 * Along a periodic axis that is not split between ranks (one rank across it),
 * libmlff applies periodicity itself and the ghosts that are images along that
 * axis are left out; on one rank with a fully periodic box no ghost is passed. */

#ifdef PAIR_CLASS
// Built as a plugin only (see mlffplugin.cpp); no PairStyle() registration here.
#else

#ifndef LMP_PAIR_MLFF_H
#define LMP_PAIR_MLFF_H

#include "pair.h"

#include <cstdint>
#include <string>
#include <vector>

struct MlffModel;

namespace LAMMPS_NS {

class PairMLFF : public Pair {
 public:
  explicit PairMLFF(class LAMMPS *);
  ~PairMLFF() override;

  void compute(int eflag, int vflag) override;
  void settings(int narg, char **arg) override;
  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int i, int j) override;
  void finish() override;
  double memory_usage() override;

 protected:
  MlffModel *model_ = nullptr;
  std::string model_path_;
  double model_cutoff_ = 0.0;     // Å
  unsigned model_layers_ = 0;     // message-passing blocks
  bool cell_mode_ = false;        // one rank, fully periodic: local atoms + cell, no ghosts
  // Axes that libmlff treats as periodic: periodic and not split between ranks.
  bool library_pbc_[3] = {false, false, false};
  bool any_library_pbc_ = false;
  std::vector<int32_t> type_to_number_;    // atomic number per LAMMPS type (index 1..ntypes)

  // Time per run, for finish().
  double library_seconds_ = 0.0;
  double plugin_seconds_ = 0.0;
  long n_calls_ = 0;
  // Atoms handed to libmlff, summed over calls: local, and ghosts of the layers x cutoff shell.
  double local_atoms_sum_ = 0.0;
  double ghost_atoms_sum_ = 0.0;

  // Per-step buffers, reused across steps.
  std::vector<int> selected_;          // ghost mode: LAMMPS index of each library atom
  // Ghost mode with library_pbc_: per ghost (index - nlocal), whether it is a periodic
  // image along a library-periodic axis (libmlff makes those itself). Set when LAMMPS
  // rebuilds its ghosts, when they are exact images of wrapped atoms.
  std::vector<char> image_ghost_;
  long long image_ghost_neighbor_calls_ = -1;
  std::vector<double> positions_;      // ghost mode: their positions
  std::vector<int32_t> numbers_;
  std::vector<double> forces_;
  std::vector<double> atom_energies_;
  std::vector<double> atom_virials_;

  void destroy_model();
  void check_units() const;
  void log_model_info();
  void select_ghosts();
  void mark_image_ghosts();
  [[noreturn]] void library_error_one(const std::string &what);
};

}    // namespace LAMMPS_NS

#endif
#endif
