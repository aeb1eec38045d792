# lme4 1.1-31 / lmerTest 3.1-3 / pbkrtest 0.5.2 reference figures for prior weights and
# offsets (R 4.2, Debian packages r-cran-lme4 r-cran-lmertest r-cran-pbkrtest).
#
# Run from the repository root:  Rscript tests/data/reference/make_weighted_references.R
# It writes
#   tests/data/datasets/penicillin_wo.csv          penicillin with a weights column w and an
#                                                  offset column o (deterministic)
#   tests/data/datasets/radon_w.csv                radon with a weights column w
#   tests/data/reference/sleepstudy_weights_ml.json    full-fit references (the harness of
#   tests/data/reference/penicillin_wo_ml.json          tests/test_reference.py reads them)
#   tests/data/reference/radon_w_offset_reml.json
#   tests/data/reference/weighted/*.json           inference on weighted / offset fits:
#       Satterthwaite df (lmerTest), profile and Wald intervals (lme4 confint), the
#       likelihood-ratio test, predictions for new data with another offset, fitted values
#       and the quantiles of the scaled (Pearson) residuals, and pbkrtest's
#       Kenward-Roger df (pbkrtest builds Var(y) = ZGZ' + sigma^2 I: it ignores the prior
#       weights, so its weighted figure is recorded only to show that; the tests check
#       weighted Kenward-Roger against a dense computation instead).
# lme4's profile() of a fixed effect mishandles prior weights too (its weighted sleepstudy
# intervals for the fixed effects are ~20 times narrower than Wald's). Both are avoided
# through the exact equivalence of a weighted model with the unweighted one of the rows
# scaled by sqrt(w): y~ = W^(1/2) y, X~ = W^(1/2) X, Z~ = W^(1/2) Z have
# Var(y~) = sigma^2 (Z~ Lambda Lambda' Z~' + I), the same theta, beta, sigma, modes, and a
# criterion larger by sum(log w). Its profile intervals, Kenward-Roger and Satterthwaite df
# (from the unweighted code paths of lme4, pbkrtest and lmerTest) are the weighted model's:
# key "sqrt_w_model".
# Every fit is by bobyqa from lme4's start with tight tolerances (the best of lme4's
# optimisers on these models).
suppressMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 0.2, rhoend = 1e-10,
                                                         maxfun = 1e5))
root <- "tests/data"
bundled <- "src/multilevel/datasets/data"

write <- function(x, path) {
  write_json(x, path, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null")
  cat("wrote", path, "\n")
}

fit_reference <- function(name, data_name, formula, data, reml, weights = NULL) {
  f <- if (is.null(weights)) {
    lme4::lmer(as.formula(formula), data, REML = reml, control = ctrl)
  } else {
    data$.w <- data[[weights]]
    lme4::lmer(as.formula(formula), data, REML = reml, control = ctrl, weights = .w)
  }
  re <- as.data.frame(ranef(f, condVar = TRUE))
  re$grp <- as.character(re$grp)
  re$grpvar <- as.character(re$grpvar)
  re$term <- as.character(re$term)
  vc <- as.data.frame(VarCorr(f))
  list(
    name = name, data = data_name, formula = formula, reml = reml,
    weights = if (is.null(weights)) setNames(list(), character(0)) else weights,
    family = "gaussian", nobs = nobs(f), ngroups = as.list(ngrps(f)),
    fixef = as.list(fixef(f)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(f))))),
    theta = unname(getME(f, "theta")), sigma = sigma(f),
    loglik = as.numeric(logLik(f)), aic = AIC(f), bic = BIC(f),
    objective = if (reml) REMLcrit(f) else deviance(f),
    varcorr = vc, singular = isSingular(f),
    ranef = re[, c("grpvar", "term", "grp", "condval", "condsd")],
    lme4_version = as.character(packageVersion("lme4")), best_optimizer = "bobyqa"
  )
}

inference <- function(f, formula, reml) {
  s <- summary(f)$coefficients
  k <- summary(f, ddf = "Kenward-Roger")$coefficients
  pr <- confint(f, method = "profile", oldNames = FALSE)
  wd <- confint(f, method = "Wald", oldNames = FALSE)
  list(
    formula = formula, reml = reml,
    satterthwaite = list(terms = rownames(s), df = unname(s[, "df"]),
                         p = unname(s[, "Pr(>|t|)"])),
    pbkrtest_kenward_roger = list(terms = rownames(k), df = unname(k[, "df"])),
    profile_ci = list(params = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2])),
    wald_ci = list(params = rownames(wd), lower = unname(wd[, 1]), upper = unname(wd[, 2])),
    fitted = unname(fitted(f)),  # with the offset
    scaled_residual_quantiles = unname(quantile(residuals(f, type = "pearson", scaled = TRUE)))
  )
}

# -- sleepstudy with prior weights (w = 1, 1.5, 2 by Days) --------------------------------------
sw <- read.csv(file.path(root, "datasets", "sleepstudy_w.csv"))
sw$Subject <- factor(sw$Subject)
form <- "Reaction ~ Days + (Days | Subject)"
write(fit_reference("sleepstudy_weights_ml", "sleepstudy_w", form, sw, FALSE, "w"),
      file.path(root, "reference", "sleepstudy_weights_ml.json"))
f <- lmerTest::lmer(Reaction ~ Days + (Days | Subject), sw, weights = w, control = ctrl)
f0 <- lmerTest::lmer(Reaction ~ Days + (1 | Subject), sw, weights = w, control = ctrl)
out <- inference(f, form, TRUE)
a <- anova(f0, f)  # both refitted by ML
out$lrt <- list(null = "Reaction ~ Days + (1 | Subject)", chisq = a$Chisq[2], df = a$Df[2],
                p = a[["Pr(>Chisq)"]][2], ml_deviance = a$deviance[2],
                ml_deviance_null = a$deviance[1])
out$theta <- unname(getME(f, "theta"))
out$objective <- REMLcrit(f)
tr <- data.frame(y = sqrt(sw$w) * sw$Reaction, sw = sqrt(sw$w), swDays = sqrt(sw$w) * sw$Days,
                 Subject = sw$Subject)
g <- lmerTest::lmer(y ~ 0 + sw + swDays + (0 + sw + swDays | Subject), tr, control = ctrl)
gi <- inference(g, "y ~ 0 + sw + swDays + (0 + sw + swDays | Subject)", TRUE)
gi$theta <- unname(getME(g, "theta"))
gi$objective <- REMLcrit(g)
gi$sum_log_w <- sum(log(sw$w))
gi$kenward_roger <- gi$pbkrtest_kenward_roger  # unweighted: pbkrtest applies
gi$pbkrtest_kenward_roger <- NULL
gi$note <- paste("the same model without weights on rows scaled by sqrt(w); parameters",
                 "sw, swDays are (Intercept), Days")
out$sqrt_w_model <- gi
write(out, file.path(root, "reference", "weighted", "sleepstudy_weights_reml.json"))

# -- radon with an offset in the formula --------------------------------------------------------
radon <- read.csv(file.path(bundled, "radon.csv"))
form <- "log_radon ~ floor + offset(log_uranium) + (1 | county)"
f <- lmerTest::lmer(log_radon ~ floor + offset(log_uranium) + (1 | county), radon,
                    control = ctrl)
out <- inference(f, form, TRUE)
out$pbkrtest_kenward_roger$note <- "no prior weights: pbkrtest applies"
rows <- c(1, 2, 50, 300, 919)
nd <- radon[rows, ]
nd$log_uranium <- nd$log_uranium + c(0.5, -1, 2, 0, 0.25)
nd$county[5] <- "NOT_A_COUNTY"
out$predict <- list(
  rows = rows - 1,  # 0-based rows of the bundled data
  log_uranium = nd$log_uranium, county = nd$county,
  fit = unname(predict(f, newdata = nd, allow.new.levels = TRUE)),
  population = unname(predict(f, newdata = nd, re.form = NA))
)
out$theta <- unname(getME(f, "theta"))
out$objective <- REMLcrit(f)
write(out, file.path(root, "reference", "weighted", "radon_offset_reml.json"))

# -- penicillin (crossed) with weights and an offset, by ML --------------------------------------
pen <- read.csv(file.path(bundled, "penicillin.csv"))
i <- seq_len(nrow(pen)) - 1
pen$w <- 1 + (i %% 5) / 2                   # 1, 1.5, ..., 3: not aligned with the 6 samples
pen$o <- ((i * 3) %% 7) / 10 - 0.3          # -0.3 .. 0.3
write.csv(pen, file.path(root, "datasets", "penicillin_wo.csv"), row.names = FALSE)
form <- "diameter ~ 1 + offset(o) + (1 | plate) + (1 | sample)"
write(fit_reference("penicillin_wo_ml", "penicillin_wo", form, pen, FALSE, "w"),
      file.path(root, "reference", "penicillin_wo_ml.json"))

# -- radon with prior weights and an offset (unbalanced: df are not whole numbers) --------------
rw <- radon
i <- seq_len(nrow(rw)) - 1
rw$w <- 0.5 + (i %% 4) / 2                  # 0.5, 1, 1.5, 2
write.csv(rw, file.path(root, "datasets", "radon_w.csv"), row.names = FALSE)
form <- "log_radon ~ floor + offset(log_uranium) + (1 | county)"
write(fit_reference("radon_w_offset_reml", "radon_w", form, rw, TRUE, "w"),
      file.path(root, "reference", "radon_w_offset_reml.json"))
f <- lmerTest::lmer(log_radon ~ floor + offset(log_uranium) + (1 | county), rw, weights = w,
                    control = ctrl)
out <- inference(f, form, TRUE)
out$theta <- unname(getME(f, "theta"))
out$objective <- REMLcrit(f)
tr <- data.frame(y = sqrt(rw$w) * (rw$log_radon - rw$log_uranium), sw = sqrt(rw$w),
                 swfloor = sqrt(rw$w) * rw$floor, county = rw$county)
g <- lmerTest::lmer(y ~ 0 + sw + swfloor + (0 + sw | county), tr, control = ctrl)
gi <- inference(g, "y ~ 0 + sw + swfloor + (0 + sw | county)", TRUE)
gi$theta <- unname(getME(g, "theta"))
gi$objective <- REMLcrit(g)
gi$sum_log_w <- sum(log(rw$w))
gi$kenward_roger <- gi$pbkrtest_kenward_roger
gi$pbkrtest_kenward_roger <- NULL
gi$note <- paste("the same model without weights on rows scaled by sqrt(w), offset taken",
                 "from y first; parameters sw, swfloor are (Intercept), floor")
out$sqrt_w_model <- gi
write(out, file.path(root, "reference", "weighted", "radon_w_offset_reml.json"))
