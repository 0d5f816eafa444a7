//! The dispatch module. (Its handlers are registered in [`register`].)

use crate::{Deps, RegisterError};
use frontdesk_core::pipeline::Registry;

pub fn register(_registry: &mut Registry, _deps: &Deps) -> Result<(), RegisterError> {
    Ok(())
}
