# glmmTMB 1.1.5 reference figures for the GLMM reference models (R 4.2, Debian package
# r-cran-glmmtmb). Run from the repository root:
#     Rscript tests/data/reference/make_glmm_references.R
# It writes tests/data/reference/glmm/<name>_tmb.json.
#
# Why a second yardstick: lme4's Laplace objective takes log|L| at the working weights of the
# PIRLS iterate before the last (and PIRLS stops at a loose tolerance), so its objective in
# (theta, beta) carries a small dependence on where the previous evaluation left PIRLS; its
# Hessian, and so its standard errors, inherit it (lme4 issue #998). glmmTMB computes the
# Laplace approximation at the exact conditional modes and its Hessian by automatic
# differentiation: the exact Laplace figures that our fit is held to. The objective is the
# full -2 log-likelihood, as in the lme4 references.
suppressMessages({
  library(glmmTMB)
  library(jsonlite)
})
data_dir <- "src/multilevel/datasets/data"
read <- function(name) {
  csv <- file.path(data_dir, paste0(name, ".csv"))
  if (file.exists(csv)) read.csv(csv) else read.csv(gzfile(paste0(csv, ".gz")))
}
models <- list(
  list(name = "cbpp_binomial", data = "cbpp", family = binomial,
       formula = cbind(incidence, size - incidence) ~ period + (1 | herd)),
  list(name = "verbagg_binomial", data = "verbagg", family = binomial,
       formula = r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)),
  list(name = "grouseticks_poisson", data = "grouseticks", family = poisson,
       formula = TICKS ~ YEAR + HEIGHT_z + (1 | BROOD) + (1 | LOCATION)),
  list(name = "owls_offset_poisson", data = "owls", family = poisson,
       formula = SiblingNegotiation ~ FoodTreatment * SexParent + offset(logBroodSize) +
         (1 | Nest))
)
for (m in models) {
  d <- read(m$data)
  if (m$data == "verbagg") d$r2 <- factor(d$r2, levels = c("N", "Y"))
  if (m$data == "grouseticks") {
    d$BROOD <- factor(d$BROOD); d$LOCATION <- factor(d$LOCATION)
  }
  fit <- glmmTMB(m$formula, data = d, family = m$family,
                 control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4)))
  vc <- VarCorr(fit)$cond
  sds <- sapply(vc, function(v) attr(v, "stddev"))
  out <- list(
    name = m$name, tool = paste("glmmTMB", packageVersion("glmmTMB")),
    formula = paste(deparse(m$formula, width.cutoff = 500), collapse = ""),
    objective = -2 * as.numeric(logLik(fit)),
    fixef = as.list(fixef(fit)$cond),
    fixef_se = as.list(sqrt(diag(vcov(fit)$cond))),
    re_sd = as.list(setNames(as.numeric(sds), names(vc))),
    converged = fit$fit$convergence == 0 && isTRUE(fit$sdr$pdHess)
  )
  path <- file.path("tests/data/reference/glmm", paste0(m$name, "_tmb.json"))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), path)
  cat(m$name, sprintf("%.10f", out$objective), "\n")
}
