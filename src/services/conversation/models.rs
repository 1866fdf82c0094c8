//! The catalogue and, for each of its models, the assistant or image generator that runs it,
//! made once at start.

use std::collections::HashMap;
use std::sync::Arc;

use crate::assistant::{self, Assistant};
use crate::catalogue::{Catalogue, ChatModel, ImageModel};
use crate::images::{self, ImageGenerator};

/// Every model, and what runs each.
pub struct Models {
    catalogue: Catalogue,
    assistants: HashMap<String, Arc<dyn Assistant>>,
    generators: HashMap<String, Arc<dyn ImageGenerator>>,
}

impl Models {
    /// The models of `catalogue`, each with its built-in or upstream runner.
    pub fn new(catalogue: Catalogue) -> Models {
        let assistants =
            catalogue.chat_models().iter().map(|m| (m.id.clone(), assistant::for_model(m))).collect();
        let generators =
            catalogue.image_models().iter().map(|m| (m.id.clone(), images::for_model(m))).collect();
        Models { catalogue, assistants, generators }
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// What writes the replies of `model`.
    pub fn assistant(&self, model: &ChatModel) -> Arc<dyn Assistant> {
        // Every catalogue model has its assistant: both maps are made from the catalogue.
        self.assistants.get(&model.id).cloned().unwrap_or_else(|| assistant::for_model(model))
    }

    /// What draws the images of `model`.
    pub fn generator(&self, model: &ImageModel) -> Arc<dyn ImageGenerator> {
        self.generators.get(&model.id).cloned().unwrap_or_else(|| images::for_model(model))
    }
}
