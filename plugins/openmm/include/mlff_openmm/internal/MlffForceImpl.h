#ifndef MLFF_OPENMM_MLFFFORCEIMPL_H_
#define MLFF_OPENMM_MLFFFORCEIMPL_H_

// The per-Context implementation of MlffForce. On the CUDA platform, when the
// CUDA kernel plugin is loaded, it runs the CalcMlffForce kernel on OpenMM's
// device arrays (the device path); everywhere else it computes on the host
// through CustomCPPForceImpl (the host path), which needs no kernel plugin.

#include "mlff.hpp"
#include "mlff_openmm/MlffForce.h"
#include "openmm/Kernel.h"
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
    double calcForcesAndEnergy(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy,
                               int groups) override;
    /// The host path's callback (CustomCPPForceImpl).
    double computeForce(OpenMM::ContextImpl& context, const std::vector<OpenMM::Vec3>& positions,
                        std::vector<OpenMM::Vec3>& forces) override;
    const MlffForce& getOwner() const override { return owner; }
    /// True when initialize() chose the device path.
    bool usesDevicePath() const { return devicePath; }

private:
    const MlffForce& owner;
    std::optional<mlff::Model> model;  // opened in initialize()
    std::vector<int> particles;       // System index of each model atom
    std::vector<int32_t> numbers;     // atomic number of each model atom
    std::vector<double> positionsA;   // model atoms, Å, xyz
    std::vector<double> forcesEvA;    // model atoms, eV/Å, xyz
    bool periodic = false;
    bool devicePath = false;
    OpenMM::Kernel kernel;  // the device path's CalcMlffForce kernel
};

} // namespace mlff_openmm

#endif // MLFF_OPENMM_MLFFFORCEIMPL_H_
