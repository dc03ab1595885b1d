#ifndef MLFF_OPENMM_MLFFFORCEIMPL_H_
#define MLFF_OPENMM_MLFFFORCEIMPL_H_

// The per-Context implementation of MlffForce: computes on the host through
// CustomCPPForceImpl, so it runs on every platform without a kernel plugin.

#include "mlff.hpp"
#include "mlff_openmm/MlffForce.h"
#include "openmm/internal/CustomCPPForceImpl.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace mlff_openmm {

class MlffForceImpl : public OpenMM::CustomCPPForceImpl {
public:
    explicit MlffForceImpl(const MlffForce& owner);
    ~MlffForceImpl();
    /// Checks the settings against the System and opens the model (one handle per Context).
    void initialize(OpenMM::ContextImpl& context) override;
    double computeForce(OpenMM::ContextImpl& context, const std::vector<OpenMM::Vec3>& positions,
                        std::vector<OpenMM::Vec3>& forces) override;
    const MlffForce& getOwner() const override { return owner; }

private:
    const MlffForce& owner;
    std::optional<mlff::Model> model;  // opened in initialize()
    std::vector<int> particles;       // System index of each model atom
    std::vector<int32_t> numbers;     // atomic number of each model atom
    std::vector<double> positionsA;   // model atoms, Å, xyz
    std::vector<double> forcesEvA;    // model atoms, eV/Å, xyz
    bool periodic = false;
};

} // namespace mlff_openmm

#endif // MLFF_OPENMM_MLFFFORCEIMPL_H_
