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

# lme4 1.1-31's inference on cbpp (tests/data/reference/glmm/cbpp_lme4_inference.json):
# profile intervals (Laplace and nAGQ = 25), the likelihood-ratio test of period, residuals
# of each type, and predictions for two known herds and a new one.
suppressMessages(library(lme4))
cbpp <- read("cbpp")
form <- cbind(incidence, size - incidence) ~ period + (1 | herd)
m1 <- glmer(form, family = binomial, data = cbpp)
m25 <- glmer(form, family = binomial, data = cbpp, nAGQ = 25)
m0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), family = binomial, data = cbpp)
ci <- function(m) {
  x <- confint(m, method = "profile", oldNames = FALSE)
  lapply(setNames(seq_len(nrow(x)), rownames(x)), function(i) unname(x[i, ]))
}
# everything from the fit before profiling it: lme4's profile() leaves the fit's internal
# state (its conditional modes) at the last profiled point, and predict() reads them
lrt <- anova(m0, m1)
newdata <- data.frame(herd = c(1, 7, 99), period = c(2, 3, 1))
out <- list(
  anova = list(chisq = lrt$Chisq[2], df = lrt$Df[2], p = lrt$`Pr(>Chisq)`[2],
               deviance = lrt$deviance),
  residuals = list(deviance = unname(residuals(m1, type = "deviance")),
                   pearson = unname(residuals(m1, type = "pearson")),
                   response = unname(residuals(m1, type = "response"))),
  fitted = unname(fitted(m1)),
  newdata = newdata,
  predict_link = unname(predict(m1, newdata = newdata, allow.new.levels = TRUE)),
  predict_response = unname(predict(m1, newdata = newdata, type = "response",
                                    allow.new.levels = TRUE)),
  predict_population = unname(predict(m1, newdata = newdata, re.form = NA))
)
out$profile_laplace <- ci(m1)
out$profile_agq25 <- ci(m25)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/data/reference/glmm/cbpp_lme4_inference.json")
cat("cbpp lme4 inference written\n")
